"""`alit verify-reference`: recompute a reference case of the paper's code and compare.

A case folder holds config.json, state_dict (paper key layout), inputs, outputs,
outputs_halting, optionally outputs_halting_fixed_variant, and train_loss.json; each tensor file is
`.safetensors` (the cases in this repository, tests/reference/) or the paper-side `.pt` (a plain
dict of tensors, read with weights_only=True). The format and every key: tests/reference/README.md.
The model is built from the state dict by the same conversion as `alit convert`; every stored
tensor and loss is recomputed (`reference_tensors`: the intermediate ones through forward hooks).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .convert import convert_state, map_alit_key, pick_state_dict
from .errors import AlitError
from .losses.distill import distill_loss
from .model.halting import Halting
from .reference_tensors import base_tensors, rollout_tensors
from .safe_pickle import read_checkpoint
from .tokenizer import AdaptiveTokenizer

# (atol, rtol) by kind; integer tensors must be equal. From the reference README.
TOLERANCES = {"tokens": (1e-5, 1e-5), "images": (1e-4, 0.0), "losses": (1e-6, 1e-5),
              "grad_norms": (0.0, 1e-5), "integer": (0.0, 0.0)}


@dataclass
class Check:
    file: str
    key: str
    kind: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        if self.note and math.isnan(self.max_abs):
            return f"{status} {self.file}:{self.key}  {self.note}"
        return (f"{status} {self.file}:{self.key}  [{self.kind}] max_abs {self.max_abs:.3g}  "
                f"max_rel {self.max_rel:.3g}{'  ' + self.note if self.note else ''}")


def kind_of(key: str, ref: torch.Tensor) -> str:
    if not ref.is_floating_point():
        return "integer"
    if ref.ndim == 4 and ref.shape[1] == 3 and ("decode" in key or "reconstructed" in key):
        return "images"
    if ref.ndim == 0 or "loss" in key:
        return "losses"
    return "tokens"


def compare(file: str, key: str, ours, ref: torch.Tensor, kind: str | None = None) -> Check:
    kind = kind or kind_of(key, ref)
    if ours is None:
        return Check(file, key, kind, math.nan, math.nan, False, "cannot compute this key")
    ours = torch.as_tensor(ours).detach().cpu()
    if tuple(ours.shape) != tuple(ref.shape):
        return Check(file, key, kind, math.nan, math.nan, False,
                     f"shape {list(ours.shape)} != reference {list(ref.shape)}")
    if kind == "integer" or ref.dtype == torch.bool:
        diff = (ours.to(torch.float64) - ref.to(torch.float64)).abs()
        m = diff.max().item() if diff.numel() else 0.0
        return Check(file, key, kind, m, m, m == 0)
    a, b = ours.to(torch.float64), ref.to(torch.float64)
    diff = (a - b).abs()
    atol, rtol = TOLERANCES[kind]
    max_abs = diff.max().item() if diff.numel() else 0.0
    max_rel = max_abs / max(b.abs().max().item(), 1e-12) if diff.numel() else 0.0
    ok = bool((diff <= atol + rtol * b.abs()).all())
    return Check(file, key, kind, max_abs, max_rel, ok)


def tensor_file(folder: Path, stem: str) -> Path | None:
    """folder/stem.safetensors, else folder/stem.pt, else None."""
    for suffix in (".safetensors", ".pt"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def load_tensors(path: Path) -> dict:
    """A reference file's tensors: safetensors, or a .pt dict read with weights_only=True."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, weights_only=True)
    except Exception as e:  # a corrupt or truncated file: one line naming it
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AlitError(f"{path}: cannot read this reference file ({detail})") from None


class Case:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise AlitError(f"{self.folder}: not a reference case (no config.json)")
        try:
            self.meta = json.loads((self.folder / "config.json").read_text())
            args = self.meta["adaptive_constructor_args"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise AlitError(f"{self.folder}/config.json: not a reference config ({type(e).__name__}: {e})") from None
        weights = tensor_file(self.folder, "state_dict")
        if weights is None:
            raise AlitError(f"{self.folder}: no state_dict.safetensors or state_dict.pt")
        state = (pick_state_dict(read_checkpoint(weights)) if weights.suffix == ".pt"
                 else load_tensors(weights))
        ours, config = convert_state(state, heads=args["encoder_num_heads"],
                                     decoder_heads=args["decoder_num_heads"])
        self._check_config(config, args)
        self.model = AdaptiveTokenizer(config)
        self.model.load_state_dict(ours)
        self.model.eval()
        # our parameter name -> the paper's top-level module name (for gradient norms)
        self.paper_group = {}
        for k in state:
            new = map_alit_key(k)
            if new is not None:
                self.paper_group[new] = k.split(".")[0]
        inputs = tensor_file(self.folder, "inputs")
        if inputs is None:
            raise AlitError(f"{self.folder}: no inputs.safetensors or inputs.pt")
        self.images = load_tensors(inputs)["images"]

    def _check_config(self, config, args) -> None:
        expected = {"image_size": args["img_size"], "patch_size": args["patch_size"],
                    "encoder_width": args["encoder_width"], "decoder_width": args["decoder_width"],
                    "encoder_depth": args["encoder_num_layers"], "decoder_depth": args["decoder_num_layers"],
                    "tokens_per_iter": args["num_init_latent_tokens"], "num_iters": args["max_rollout_iters"],
                    "quantize": args["quantize_latent"]}
        for name, value in expected.items():
            if getattr(config, name) != value:
                raise AlitError(f"{self.folder}: inferred {name}={getattr(config, name)} but "
                                f"config.json says {value}")

    # --- the tensors of one forward pass ------------------------------------------------------
    def encode_tensors(self, tensors: dict, threshold: float) -> dict:
        """The paper's encode(): first iteration whose batch-mean L1 is below the threshold."""
        T = self.model.config.num_iters
        l1 = torch.stack([(tensors[f"iter{t}/reconstructed_imgs"] - self.images).abs().mean()
                          for t in range(T)])
        below = (l1 < threshold).nonzero()
        it = int(below[0]) if len(below) else int(l1.argmin())
        return {"encode/per_iter_batch_mean_l1": l1, "encode/returned_iter": torch.tensor(it),
                "encode/num_latent_tokens": torch.tensor((it + 1) * self.model.config.tokens_per_iter)}

    # --- the checks, file by file --------------------------------------------------------------
    def check_outputs(self, name: str = "outputs.pt") -> list[Check]:
        ref = load_tensors(self.folder / name)
        ours = rollout_tensors(self.model, self.images, Halting("off"))
        ours.update(base_tensors(self.model, self.images))
        if "encode/threshold" in ref:
            thr = float(ref["encode/threshold"])
            ours.update(self.encode_tensors(ours, thr))
            ours["encode/threshold"] = torch.tensor(thr)  # an input of the check, echoed
        return [compare(name, k, ours.get(k), v) for k, v in ref.items()]

    def check_halting(self, name: str, mode: str) -> list[Check]:
        ref = load_tensors(self.folder / name)
        thr = float(ref["halting_meta/threshold"])
        T = self.model.config.num_iters
        draws = None
        if self.model.is_vqgan and mode == "paper":
            draws = [ref.get(f"iter{t}/bernoulli_draw") for t in range(T)]
            if any(d is None for d in draws):
                return [Check(name, "iter*/bernoulli_draw", "integer", math.nan, math.nan, False,
                              "the stored Bernoulli draws are needed to check stochastic halting")]
        ours = rollout_tensors(self.model, self.images, Halting(mode, thr, draws=draws))
        masks = [ours.get(f"iter{t}/drop_mask", ours.get(f"iter{t}/intended_drop_mask")) for t in range(T)]
        if mode == "paper" and not self.model.is_vqgan:
            masks = [torch.zeros_like(m) for m in masks]  # the paper's VAE halting is a no-op
        if all(m is not None for m in masks):
            ours["halting_meta/num_dropped_per_iter"] = torch.stack([m.sum() for m in masks]).float()
        ours["halting_meta/threshold"] = torch.tensor(thr)
        if "halting_meta/bernoulli_seed" in ref:  # how the stored draws were made: an input
            ours["halting_meta/bernoulli_seed"] = ref["halting_meta/bernoulli_seed"]
        if "halting_meta/identical_to_no_halting" in ref:
            plain = rollout_tensors(self.model, self.images, Halting("off"))
            same = all(torch.equal(ours[k], plain[k]) for k in plain if k in ours and "halting" not in k)
            ours["halting_meta/identical_to_no_halting"] = torch.tensor(same)
        if "halting_meta/NOT_OFFICIAL_fixed_indexing_bug" in ref:
            ours["halting_meta/NOT_OFFICIAL_fixed_indexing_bug"] = torch.tensor(mode == "threshold")
        return [compare(name, k, ours.get(k), v) for k, v in ref.items()]

    def check_train_loss(self, name: str = "train_loss.json") -> list[Check]:
        ref = json.loads((self.folder / name).read_text())
        # settings of the stored run that we reproduce: every iteration's loss, no halting
        settings = {"sample_grad_iters": -1, "dynamic_halting": False}
        for key, value in settings.items():
            actual = ref.pop(key, value)
            if actual != value:
                return [Check(name, key, "losses", math.nan, math.nan, False,
                              f"cannot reproduce a run with {key}={actual!r} (only {value!r})")]
        model = self.model
        model.train()
        model.base.requires_grad_(False)
        model.zero_grad(set_to_none=True)
        try:
            weights = ref.get("lambda_loss_weight")
            roll = model.rollout(self.images, "off", pixels=False)
            loss = distill_loss(roll, weights) if weights else distill_loss(roll)
            loss.total.backward()
        finally:
            model.eval()
            model.base.requires_grad_(True)
        checks = [compare(name, "total_loss", loss.total, torch.tensor(ref["total_loss"]), "losses")]
        if "total_loss_recomputed_from_parts" in ref:
            parts = sum(float(w) * (n if n is not None else c).item() + (c.item() if n is not None else 0.0)
                        + q.item() for w, n, c, q in zip(weights or [1.0] * 8, loss.nll, loss.code, loss.quantizer))
            checks.append(compare(name, "total_loss_recomputed_from_parts", torch.tensor(parts),
                                  torch.tensor(ref["total_loss_recomputed_from_parts"]), "losses"))
        names = {"nll_loss": loss.nll, "code_loss": loss.code, "quantization_loss": loss.quantizer}
        for entry in ref.get("per_iter", []):
            t = entry["iter"]
            for key, value in entry.items():
                if key == "iter":
                    continue
                ours = names[key][t] if key in names and t < len(names[key]) else None
                checks.append(compare(name, f"per_iter[{t}].{key}", ours, torch.tensor(value), "losses"))
        grads: dict[str, float] = {}
        without = []
        for pname, p in model.named_parameters():
            if pname.startswith("base."):
                continue
            group = self.paper_group.get(pname, pname)
            if p.grad is None:
                without.append(group)
                continue
            grads[group] = grads.get(group, 0.0) + p.grad.double().pow(2).sum().item()
        for group, value in ref.get("grad_l2_norm_by_top_level_module", {}).items():
            ours = math.sqrt(grads[group]) if group in grads else None
            checks.append(compare(name, f"grad_l2_norm[{group}]", None if ours is None else torch.tensor(ours),
                                  torch.tensor(value, dtype=torch.float64), "grad_norms"))
        if "trainable_params_without_grad" in ref:
            same = sorted(set(without)) == sorted(ref["trainable_params_without_grad"])
            checks.append(Check(name, "trainable_params_without_grad", "integer", math.nan, math.nan, same,
                                f"ours {sorted(set(without))}, reference {ref['trainable_params_without_grad']}"))
        for key in ("total_loss", "per_iter", "grad_l2_norm_by_top_level_module", "total_loss_recomputed_from_parts",
                    "trainable_params_without_grad", "lambda_loss_weight"):
            ref.pop(key, None)
        for key, value in ref.items():  # anything else numeric is a quantity we do not know
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                checks.append(Check(name, key, "losses", math.nan, math.nan, False, "cannot compute this key"))
        return checks

    def run(self) -> list[Check]:
        checks = []
        outputs, halting, fixed = (tensor_file(self.folder, stem) for stem in
                                   ("outputs", "outputs_halting", "outputs_halting_fixed_variant"))
        if outputs is not None:
            checks += self.check_outputs(outputs.name)
        if halting is not None:
            checks += self.check_halting(halting.name, "paper")
        if fixed is not None:
            checks += self.check_halting(fixed.name, "threshold")
        if (self.folder / "train_loss.json").is_file():
            checks += self.check_train_loss()
        if not checks:
            raise AlitError(f"{self.folder}: no outputs, outputs_halting or train_loss.json to check")
        return checks


def summarize(checks: list[Check]) -> dict[str, tuple[float, float]]:
    """Largest (abs, rel) error per kind."""
    out: dict[str, tuple[float, float]] = {}
    for c in checks:
        if math.isnan(c.max_abs):
            continue
        a, r = out.get(c.kind, (0.0, 0.0))
        out[c.kind] = (max(a, c.max_abs), max(r, c.max_rel))
    return out


def verify_case(folder: str | Path) -> list[Check]:
    torch.manual_seed(0)
    return Case(folder).run()

