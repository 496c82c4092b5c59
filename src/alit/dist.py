"""The only file that knows about ranks (STYLE principle 7): the process-group helpers of training
and of `alit tokenize`.

Under `torchrun` (WORLD_SIZE > 1) training runs as DDP: NCCL on GPUs, gloo on CPU. Everything
else calls the helpers here: `is_main()` before writing, `mean(...)` to agree on logged values,
`wrap(module)` for gradient averaging and the global batch's statistics.
"""
from __future__ import annotations

import contextlib
import datetime
import inspect
import os

import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .model.latent_norm import LatentStandardizer


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_initialized() else 1


def rank() -> int:
    """This process's rank (before init / after shutdown: the one torchrun gave it, else 0)."""
    return tdist.get_rank() if tdist.is_initialized() else _env_int("RANK", 0)


def is_main() -> bool:
    return rank() == 0


def init() -> torch.device:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = _env_int("WORLD_SIZE", 1)
    local = _env_int("LOCAL_RANK", 0)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return device


def shutdown() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()


def barrier() -> None:
    if tdist.is_initialized():
        tdist.barrier()


def wrap(module: nn.Module, device: torch.device, find_unused: bool = False) -> nn.Module:
    """DDP around a module that has trainable parameters, when there is more than one process. Its
    `LatentStandardizer`s then take the statistics of the global batch, as SyncBatchNorm does."""
    if world_size() == 1 or not any(p.requires_grad for p in module.parameters()):
        return module
    for m in module.modules():
        if isinstance(m, LatentStandardizer):
            m.reduce = all_reduce_sum_grad
    ids = [device.index] if device.type == "cuda" else None
    # no broadcast of rank 0's buffers at every forward: latent_norm's running averages are updated
    # from the same global statistics on every process (a broadcast would only overwrite equal
    # values), the discriminators' BatchNorm averages are never read (they stay in train mode), and
    # the wrapped models have no other buffers
    params = inspect.signature(DistributedDataParallel).parameters
    no_broadcast = ({"forward_sync_buffers": False} if "forward_sync_buffers" in params  # torch >= 2.14
                    else {"broadcast_buffers": False})
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused, **no_broadcast)


def unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def no_sync(module: nn.Module, skip: bool):
    """Skip the gradient all-reduce (accumulation micro-steps before the last)."""
    if skip and hasattr(module, "no_sync"):
        return module.no_sync()
    return contextlib.nullcontext()


def mean(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of a tensor over all processes."""
    if world_size() > 1:
        values = values.clone()
        tdist.all_reduce(values)
        values /= world_size()
    return values


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every process when it is True on any."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj):
    """Rank 0's object on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj) -> list:
    """Every process's object, on every process."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of a tensor over all processes."""
    if world_size() > 1:
        values = values.clone()
        tdist.all_reduce(values)
    return values


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce with its gradient: each process's input reaches every process's output, so an
    input's gradient is the sum of the output gradients of all processes."""

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> torch.Tensor:
        values = values.clone(memory_format=torch.contiguous_format)
        tdist.all_reduce(values)
        return values

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        tdist.all_reduce(grad)
        return grad


def all_reduce_sum_grad(values: torch.Tensor) -> torch.Tensor:
    """`all_reduce_sum` that autograd goes through: the gradient of statistics of the global batch.
    Ours rather than torch.distributed.nn.functional.all_reduce, deprecated in torch 2.14 for a
    private module (we support torch >= 2.4)."""
    return _SumOverProcesses.apply(values) if world_size() > 1 else values
