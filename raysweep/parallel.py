"""Data parallelism inside one trial (``Experiment(workers=N)``, N Ray Train workers, one process group).

Every rank runs the same trial with the same seeds, so every rank holds the same model, draws the same batches,
the same noise and the same label dropout. Inside the loop (``split_forwards``) each call of the model runs on
the rank's shard of the batch and the outputs are gathered back, so the loss — and everything a method computes
from the model's outputs — is the whole batch's, identical on every rank; ``sum_gradients`` then adds up the
shards' gradients, and every rank takes the same optimiser step. The global batch is unchanged: a W-rank loop
computes what the 1-rank loop computes, up to the order of float additions (tests/test_parallel.py).

Why not ``torch.nn.parallel.DistributedDataParallel``: its reducer assumes one forward per backward of one
wrapped module. The methods call the model several times a step (SalUn: twice; EraseDiff: on a deep copy in an
inner loop; sampling inside the convergence probe), so the gradients are summed once per step here instead —
DDP's all-reduce, without its overlap of communication with the backward pass.

The store is seen as rank 0 sees it (``agree``: rank 0 answers, the others receive), so every rank takes the same
branch (cached or not, resume or not) and no rank waits in a collective the others skipped; only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any, Callable

import torch
import torch.distributed as dist


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world() > 1 else 0


def leader() -> bool:
    """The rank that writes to the store, reports and logs."""
    return rank() == 0


def agree(answer: Callable[[], Any]) -> Any:
    """Rank 0's ``answer()`` on every rank (the others do not compute it)."""
    if world() == 1:
        return answer()
    box = [answer() if rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if world() == 1:
        return [value]
    out = [None] * world()
    dist.all_gather_object(out, value)
    return out


class _Gather(torch.autograd.Function):
    """All ranks' shards, in rank order. Backward keeps this rank's rows: what follows the gather is the same
    computation on every rank, so each rank's gradient of it is already the whole batch's."""

    @staticmethod
    def forward(ctx, shard: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        r = rank()
        ctx.rows = (sum(sizes[:r]), sum(sizes[:r + 1]))
        pad = max(sizes)
        padded = torch.zeros((pad, *shard.shape[1:]), dtype=shard.dtype, device=shard.device)
        padded[:len(shard)] = shard
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        lo, hi = ctx.rows
        return grad[lo:hi], None


@contextlib.contextmanager
def split_forwards(model: torch.nn.Module):
    """While open, a call of ``model`` itself (not of a copy of it) runs on this rank's shard of the batch and
    returns the whole batch's output. Batches smaller than the world run whole on every rank."""
    if world() == 1:
        yield
        return
    w, r = world(), rank()
    shapes: list[list[int] | None] = []

    def before(module, args, kwargs):
        if module is not model:  # a deep copy carries the hooks along (EraseDiff's inner loop): run it whole
            return None
        first = args[0] if args else next(v for v in kwargs.values() if torch.is_tensor(v))
        b = first.shape[0]
        if b < w:
            shapes.append(None)
            return None
        sizes = [b // w + (i < b % w) for i in range(w)]  # tensor_split's shares, without allocating
        lo, hi = sum(sizes[:r]), sum(sizes[:r + 1])

        def cut(v):
            return v[lo:hi] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == b else v

        shapes.append(sizes)
        return tuple(cut(a) for a in args), {k: cut(v) for k, v in kwargs.items()}

    def after(module, args, kwargs, out):
        if module is not model:
            return None
        sizes = shapes.pop()
        if sizes is None:
            return None
        if torch.is_tensor(out):
            return _Gather.apply(out, sizes)
        out.sample = _Gather.apply(out.sample, sizes)  # diffusers' UNet output
        return out

    hooks = [model.register_forward_pre_hook(before, with_kwargs=True),
             model.register_forward_hook(after, with_kwargs=True)]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def sum_gradients(params: list[torch.Tensor]) -> None:
    """Add up the shards' gradients on every rank (one all-reduce of all of them)."""
    if world() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def where() -> dict:
    """This process's host and, inside Ray, its node id: which node ran what."""
    node = ""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        node = sys.modules["ray"].get_runtime_context().get_node_id()
    return {"host": socket.gethostname(), "node_id": node}
