"""A plain training loop for the generator (one process; AdamW, warm-up then cosine decay, gradient
clipping, class dropout for classifier-free guidance). The pieces a shared training engine needs
are separate: `make_optimizer`, `lr_at`, `drop_classes` and `train_step`.

    data = GeneratorData("tokens/")
    gen = train_generator(data, config_for(data, "tiny"), TrainOptions(steps=2000), log=print)
    gen.save("my-generator")
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .data import Batch, GeneratorData
from .generator import Generator
from .loss import sequence_loss
from .model import GeneratorConfig, generator_config


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 2000                     # optimizer steps
    batch_size: int = 32                  # sequences per step
    lr: float = 1e-3                      # peak learning rate, reached after warmup_steps
    min_lr: float = 1e-4                  # the cosine decay ends here at the last step
    warmup_steps: int = 100
    weight_decay: float = 0.1             # on matrices only (not biases, norms or embeddings)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0                # max global gradient norm; 0: none
    class_dropout: float = 0.1            # share of classes replaced by the null class (guidance)
    seed: int = 0                         # initial weights, batch order, dropped classes


def config_for(data: GeneratorData, preset: str = "tiny", **overrides) -> GeneratorConfig:
    """A preset-size generator config for the tokens (and classes) of `data`."""
    return generator_config(preset, vocab_size=data.vocab_size, lengths=data.lengths, tokenizer=data.fingerprint,
                            classes=data.classes, **overrides)


def make_optimizer(model: torch.nn.Module, options: TrainOptions) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices of linear layers only."""
    params = list(model.named_parameters())
    decay = [p for n, p in params if _decays(n, p)]
    rest = [p for n, p in params if not _decays(n, p)]
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=options.lr, betas=options.betas)


def _decays(name: str, p: torch.Tensor) -> bool:
    return p.ndim == 2 and not name.startswith(("wte", "wpe"))


def lr_at(step: int, options: TrainOptions) -> float:
    """Linear warm-up to lr over warmup_steps, then cosine down to min_lr at the last step."""
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    span = max(1, options.steps - 1 - options.warmup_steps)
    progress = min(1.0, (step - options.warmup_steps) / span)
    return options.min_lr + 0.5 * (options.lr - options.min_lr) * (1 + math.cos(math.pi * progress))


def drop_classes(batch: Batch, share: float, null_class: int, generator: torch.Generator) -> Batch:
    """The batch with each class replaced by the null class with probability `share`."""
    if share <= 0:
        return batch
    drop = torch.rand(batch.classes.shape, generator=generator) < share
    classes = torch.where(drop.to(batch.classes.device), torch.full_like(batch.classes, null_class), batch.classes)
    return Batch(batch.ids, batch.length_index, classes)


def train_step(model: Generator, batch: Batch, optimizer: torch.optim.Optimizer, options: TrainOptions,
               step: int) -> dict[str, torch.Tensor]:
    """One optimizer step on a batch (its classes already dropped); -> logs (loss, id_loss,
    length_loss, lr, grad_norm)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, options)
    loss, logs = sequence_loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip = options.grad_clip if options.grad_clip > 0 else float("inf")
    logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).detach()
    optimizer.step()
    logs["lr"] = torch.tensor(lr_at(step, options))
    return logs


def train_generator(data: GeneratorData, config: GeneratorConfig, options: TrainOptions = TrainOptions(), *,
                    device: str | torch.device = "cpu", log=None) -> Generator:
    """Train a new generator of `config` on `data` for options.steps steps -> it, in eval mode.
    log: called as log(step, logs) after every step (logs: floats)."""
    data.check_config(config)
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed, and nothing else on it
        torch.manual_seed(options.seed)
        model = Generator(config, tokenizer_checkpoint=data.checkpoint).to(device).train()
    optimizer = make_optimizer(model, options)
    generator = torch.Generator().manual_seed(options.seed)
    batches = data.batches(options.batch_size, seed=options.seed)
    for step in range(options.steps):
        batch = drop_classes(next(batches), options.class_dropout, config.null_class, generator).to(device)
        logs = train_step(model, batch, optimizer, options, step)
        if log is not None:
            log(step, {k: float(v) for k, v in logs.items()})
    return model.eval()
