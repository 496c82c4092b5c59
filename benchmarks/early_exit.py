"""Early exit: the cost of an encode whose criterion is met at the first iteration, against a full
rollout (every length, with reconstructions), for random-weight models of a few presets.

    python benchmarks/early_exit.py                         # tiny (batch 4) and small (batch 1), CPU
    python benchmarks/early_exit.py --presets small --batch 8 --device cuda

Each time is the best of --repeats runs (the first run warms up). The issue asks for an early
exit that costs well under a third of a full rollout.
"""
from __future__ import annotations

import argparse
import time

import torch

import alit

DEFAULT_BATCH = {"tiny": 4}  # other presets: 1 (a 256x256 model is slow on a CPU)


def accept_all(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """A criterion met at once: every image is good enough at the first length."""
    return torch.ones(images.shape[0], dtype=torch.bool, device=reconstructions.device)


def best_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["tiny", "small"])
    p.add_argument("--batch", type=int, default=None, help="images per batch (default: 4 for tiny, else 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement, best taken (default 3)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    print(f"device {device}, {torch.get_num_threads()} CPU threads, best of {args.repeats}")
    header = (f"{'preset':<8}{'size':>6}{'batch':>6}{'encode, met at once':>22}{'encode, 1st length':>20}"
              f"{'full rollout':>14}{'ratio':>8}")
    print(header)
    for name in args.presets:
        torch.manual_seed(0)
        tok = alit.build(name).to(device)
        S, L0 = tok.config.image_size, tok.config.tokens_per_iter
        batch = args.batch or DEFAULT_BATCH.get(name, 1)
        images = torch.rand(batch, 3, S, S, generator=torch.Generator().manual_seed(0)).to(device)
        enc = tok.encode(images, criterion=accept_all)
        assert enc.iterations == 1 and (enc.lengths == L0).all()
        with torch.no_grad():
            t_exit = best_time(lambda: tok.encode(images, criterion=accept_all), args.repeats, device)
            t_fixed = best_time(lambda: tok.encode(images, num_tokens=L0), args.repeats, device)
            t_full = best_time(lambda: tok.rollout(images), args.repeats, device)
        print(f"{name:<8}{S:>6}{batch:>6}{t_exit:>21.3f}s{t_fixed:>19.3f}s{t_full:>13.3f}s"
              f"{t_exit / t_full:>8.3f}", flush=True)
    print("ratio = encode with a criterion met at the first iteration / full rollout (lower is better)")


if __name__ == "__main__":
    main()
