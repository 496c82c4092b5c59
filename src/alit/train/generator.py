"""Stage `generator`: a length-aware autoregressive generator (alit/generator/) on the Parquet parts
of `alit tokenize`, on the engine every stage shares (precision, torchrun, resume, Ctrl-C).

The sequences of a step are those of `data.StepBatches` (a function of the seed and the step alone,
the same whatever the number of processes). The loss is the negative log-likelihood per predicted
token of the whole global batch (the ids and one length per sequence): every process divides its
sum by the step's count of predicted tokens, known from the sampler without communication, so that
2 processes train as 1 with the same global batch. A sequence's class is dropped (classifier-free
guidance) by a draw seeded by its position in the run, likewise. The checkpoint's model is a
generator folder (`alit.load_generator(RUN)`, EMA weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data import BatchPlan, StepBatches, TrainingData
from ..data.transforms import sample_seed
from ..errors import AlitError
from ..generator import Batch, Generator, GeneratorData, config_for
from ..generator.io import read_meta, save_generator
from ..generator.loss import sequence_nll
from ..generator.model import GeneratorConfig
from .stage import Stage

__all__ = ["GeneratorStage"]


@dataclass
class StepBatch:
    """One micro-batch of sequences, and the step's counts over all processes and micro-steps."""

    batch: Batch
    step_ids: int        # ids predicted in the whole global batch of the step
    step_sequences: int  # its sequences (one length token each)

    def to(self, device, non_blocking: bool = False) -> "StepBatch":
        return StepBatch(self.batch.to(device), self.step_ids, self.step_sequences)


class SequenceLoss(nn.Module):
    """What DDP wraps: a micro-batch -> (its share of the step's loss, logs). Each sum is divided by
    the step's global count and multiplied by the shares that DDP and accumulation divide by, so
    the gradient of the step is that of the global batch's mean NLL per predicted token."""

    def __init__(self, model: Generator, shares: int):
        super().__init__()
        self.model, self.shares = model, shares  # shares: processes x micro-steps

    def forward(self, ids: torch.Tensor, length_index: torch.Tensor, classes: torch.Tensor, step_ids: int,
                step_sequences: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nll = sequence_nll(self.model, Batch(ids, length_index, classes))
        id_sum, length_sum = nll.ids.sum() * self.shares, nll.length.sum() * self.shares
        loss = (id_sum + length_sum) / (step_ids + step_sequences)
        logs = {"loss": loss, "id_loss": id_sum / step_ids, "length_loss": length_sum / step_sequences}
        return loss, {k: v.detach() for k, v in logs.items()}


class GeneratorStage(Stage):
    def __init__(self, recipe, device, log, saved_meta: dict | None = None):
        super().__init__(recipe, device, log)
        self.data = GeneratorData(recipe.data, classes=recipe.classes)
        if saved_meta is not None:
            config = GeneratorConfig.from_dict(saved_meta["config"])
            self.data.check_config(config)
        else:
            try:
                config = config_for(self.data, recipe.model, **recipe.model_overrides)
            except (TypeError, ValueError) as e:
                raise AlitError(f"recipe: generator {recipe.model!r} with model_overrides "
                                f"{recipe.model_overrides}: {e}") from None
        self.model = Generator(config, tokenizer_checkpoint=self.data.checkpoint).to(device).train()
        self.forward_module = None  # made in training_data, once the micro-steps are known
        classes = f"{config.num_classes} classes (dropout {recipe.class_dropout})" if config.num_classes else "no classes"
        log(f"generator: preset {recipe.model!r}, {config.n_layer} blocks x {config.n_embd} wide, "
            f"{sum(p.numel() for p in self.model.parameters()):,} parameters; {len(self.data)} sequences of "
            f"{config.vocab_size} codes at lengths {list(config.lengths)}, {classes}")

    # --- what a checkpoint exports: a generator folder ----------------------------------------------
    def write_model(self, state: dict[str, torch.Tensor], folder: Path, source: str) -> None:
        save_generator(state, self.model.config, folder, tokenizer_checkpoint=self.data.checkpoint,
                       source=source, data=str(self.recipe.data))

    @staticmethod
    def read_model_meta(folder: Path) -> dict:
        return read_meta(folder)[1]

    # --- what it trains on ---------------------------------------------------------------------------
    def training_data(self, plan: BatchPlan) -> TrainingData:
        sampler = StepBatches(len(self.data), plan.batch_size, plan.micro_batch, plan.rank, plan.world,
                              plan.seed, plan.first_step, plan.last_step)
        self.forward_module = SequenceLoss(self.model, plan.world * sampler.accum)
        return TrainingData(self._batches(sampler, plan), len(self.data), "tokens",
                            f"{len(self.data)} sequences in {self.data.root}")

    def _batches(self, sampler: StepBatches, plan: BatchPlan):
        """(StepBatch, no skipped files) per micro-step of this process, from plan.first_step on."""
        data, B = self.data, plan.batch_size
        step = plan.first_step
        while plan.last_step is None or step <= plan.last_step:
            first = (step - 1) * B
            rows = torch.tensor([sampler.index(c) for c in range(first, first + B)])  # the global batch
            step_ids = int(data.num_tokens[rows].sum())
            for m in range(sampler.accum):
                positions = sampler.positions(step, m)
                batch = data.batch(rows[positions.start - first:positions.stop - first])
                yield StepBatch(self._drop_classes(batch, positions), step_ids, B), []
            step += 1

    def _drop_classes(self, batch: Batch, positions: range) -> Batch:
        """The batch with each class replaced by the null class with probability class_dropout, drawn
        from the sequence's position in the run."""
        share = self.recipe.class_dropout
        if not self.model.config.num_classes or share <= 0:
            return batch
        u = torch.tensor([(sample_seed(self.recipe.seed, c, stream=2) >> 10) / 2 ** 53 for c in positions])
        null = torch.full_like(batch.classes, self.model.config.null_class)
        return Batch(batch.ids, batch.length_index, torch.where(u < share, null, batch.classes))

    def preview_inputs(self) -> torch.Tensor | None:
        return None

    # --- what trains -----------------------------------------------------------------------------------
    def micro_step(self, item: StepBatch, step: int, micro: int, backward) -> dict[str, torch.Tensor]:
        b = item.batch
        loss, logs = self.forward_module(b.ids, b.length_index, b.classes, item.step_ids, item.step_sequences)
        backward(loss)
        return logs
