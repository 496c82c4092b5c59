"""The generator's objective: cross-entropy on every id and on the length token, so that both
p(ids | L, c) and p(L | c) are learned from the data. The loss is the mean over all predicted
tokens (the length counts as one), i.e. the negative log-likelihood of whole sequences per token."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import Batch
from .model import LengthGPT


@dataclass
class SequenceNLL:
    """Negative log-likelihoods in nats, per sequence."""
    length: torch.Tensor  # [B]: -log p(L | c)
    ids: torch.Tensor     # [B, Lmax]: -log p(id_i | ...), 0 past each length


def sequence_nll(model: LengthGPT, batch: Batch) -> SequenceNLL:
    h = model(model.sequence(batch.classes, batch.length_index, batch.ids))  # [B, 1 + Lmax, C]
    length = F.cross_entropy(model.length_logits(h[:, 0]), batch.length_index, reduction="none")  # [B]
    logits = model.id_logits(h[:, 1:])  # [B, Lmax, K]: position 1 + i predicts id i
    ids = F.cross_entropy(logits.flatten(0, 1), batch.ids.flatten(), ignore_index=-1, reduction="none")
    return SequenceNLL(length, ids.view_as(batch.ids))


def sequence_loss(model: LengthGPT, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(the training loss, logs: loss, id_loss per id, length_loss per sequence; nats, detached)."""
    nll = sequence_nll(model, batch)
    num_ids = (batch.ids >= 0).sum()
    loss = (nll.length.sum() + nll.ids.sum()) / (num_ids + nll.length.numel())
    logs = {"loss": loss, "id_loss": nll.ids.sum() / num_ids, "length_loss": nll.length.mean()}
    return loss, {k: v.detach() for k, v in logs.items()}
