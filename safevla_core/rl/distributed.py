"""Data-parallel training across processes with ``torch.distributed`` (ARCHITECTURE.md "Scale").

``torchrun`` starts one process (*rank*) per GPU, or per slice of CPU cores; each rank runs
its own vector of environments, with its own seeds and its own shard of the training houses,
and the learners stay identical:

* the weights start equal (:func:`broadcast_module` from rank 0, as
  ``DistributedDataParallel`` does at construction) and every update applies the same
  gradient: :func:`all_reduce_gradients` sums the per-rank gradients after the micro-batched
  accumulation. Each rank weights its loss by its steps over the *global* number of steps in
  the minibatch, so the sum equals the single-process gradient on the union of the rollouts.
  An explicit all-reduce instead of ``DistributedDataParallel``: the actor and the two critics
  are three networks driven through ``act``/``decode_segments`` rather than ``forward`` (DDP
  hooks into ``forward``), ranks run different numbers of micro-batches (their rollouts cut into
  different episode pieces; DDP's reducer expects the same backward passes on every rank), and
  the value-only warm-up leaves the actor without gradient;
* episode statistics, and with them the constraint's J_c, are summed over ranks before the
  multiplier update (:func:`episode_means`: a global mean over episodes, not a mean of per-rank
  means), so every rank holds the same lambda;
* rank 0 alone writes checkpoints, ``metrics.jsonl`` and TensorBoard events.

Every function here is the identity (or the local value) when no process group is initialised,
so the single-process path runs the same code. Collectives must be called by every rank in the
same order; callers keep them at the call site, visible (as OmniSafe does).

Backends (PyTorch's documented choice): ``gloo`` for CPU tensors, ``nccl`` for CUDA tensors;
nccl collectives take CUDA tensors, so the small statistics tensors live on
:func:`collective_device`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

#: Seed offset between ranks (a prime larger than any per-rank number of environments, so the
#: vector envs' ``seed + i`` of different ranks never collide; ours).
RANK_SEED_STRIDE = 104_729
#: Gradient bucket size for the all-reduce, bytes (DistributedDataParallel's default
#: ``bucket_cap_mb=25``).
BUCKET_BYTES = 25 * 1024 * 1024
#: Default timeout of a collective, seconds (torch's default for gloo is 30 min; a hung peer
#: should fail a run sooner).
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank, ``0 .. world_size - 1`` (torchrun's ``RANK``).
        world_size: Number of ranks (torchrun's ``WORLD_SIZE``).
        local_rank: Rank on this machine (torchrun's ``LOCAL_RANK``): the CUDA device index.
        backend: ``"gloo"``, ``"nccl"``, or None when not distributed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group with more than one rank is running."""
        return self.world_size > 1


def is_initialized() -> bool:
    """Whether ``torch.distributed`` is available and its default group initialised."""
    return dist.is_available() and dist.is_initialized()


def context() -> DistContext:
    """This process's :class:`DistContext` (rank 0 of 1 without a process group)."""
    if not is_initialized():
        return DistContext()
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        backend=str(dist.get_backend()),
    )


def backend_for(device: str) -> str:
    """``"nccl"`` for a CUDA learner, ``"gloo"`` for a CPU one (torch.distributed docs)."""
    return "nccl" if device.startswith("cuda") else "gloo"


def init_distributed(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Join the job ``torchrun`` launched, if any.

    Reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``) through ``init_method="env://"``. Without ``WORLD_SIZE`` or with
    ``WORLD_SIZE=1`` nothing is initialised and rank 0 of 1 is returned. On CUDA each rank uses
    the GPU ``cuda:LOCAL_RANK``.

    Args:
        device: The learner device (``TrainConfig.device``): picks the backend.
        timeout_s: Timeout of each collective, seconds.

    Returns:
        The context; already-initialised groups are reused.

    Raises:
        RuntimeError: If a CUDA learner is asked for and this rank has no GPU ``LOCAL_RANK``.
    """
    if is_initialized():
        return context()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend_for(device)
    if backend == "nccl":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"rank with LOCAL_RANK={local_rank} needs a GPU but torch sees "
                f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}: launch at "
                "most one process per GPU (torchrun --nproc-per-node N_GPUS)"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s)
    )
    return context()


def shutdown() -> None:
    """Destroy the default process group if there is one."""
    if is_initialized():
        dist.destroy_process_group()


def rank_device(device: str, ctx: DistContext) -> str:
    """The learner device of this rank: ``cuda:LOCAL_RANK`` for a CUDA job, else ``device``."""
    if ctx.enabled and device.startswith("cuda"):
        return f"cuda:{ctx.local_rank}"
    return device


def rank_seed(seed: int, rank: int) -> int:
    """Seed of ``rank``: ``seed + RANK_SEED_STRIDE * rank`` (rank 0 keeps ``seed``)."""
    return int(seed) + RANK_SEED_STRIDE * int(rank)


def shard(n: int, rank: int, world_size: int) -> list[int]:
    """Indices ``0 .. n-1`` this rank owns: ``rank, rank + world, ...`` (round robin).

    With more ranks than items, rank r gets item ``r % n`` alone (items are shared, none is
    left out). AllenAct-based training (the authors' code) splits the scene list across
    sampler processes in the same spirit.

    Raises:
        ValueError: If ``n < 1`` or the rank is outside ``0 .. world_size - 1``.
    """
    if n < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need n >= 1 and 0 <= rank < world_size, got {n}, {rank}, {world_size}")
    if world_size > n:
        return [rank % n]
    return list(range(rank, n, world_size))


def collective_device() -> torch.device:
    """Where small tensors for collectives live: the current GPU under nccl, else the CPU."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (a copy; identity without a process group).

    Args:
        values: Any shape; reduced on :func:`collective_device` and returned on its own device.
    """
    if not is_initialized():
        return values.clone()
    t = values.detach().to(collective_device()).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.to(values.device)


def all_reduce_mean(value: float) -> float:
    """Average a scalar over all ranks (float64); ``value`` without a process group.

    Every rank must call it (it is a collective) and every rank gets the mean.
    """
    if not is_initialized():
        return float(value)
    total = all_reduce_sum(torch.tensor([float(value)], dtype=torch.float64))
    return float(total.item()) / dist.get_world_size()


def all_reduce_min(value: int) -> int:
    """The minimum of an integer over all ranks; ``value`` without a process group."""
    if not is_initialized():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is True on at least one rank; ``flag`` without a process group."""
    if not is_initialized():
        return bool(flag)
    t = torch.tensor([int(bool(flag))], dtype=torch.int64, device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def episode_means(
    episodes: Sequence[Mapping[str, float]], keys: Sequence[str]
) -> tuple[dict[str, float], int]:
    """Means of episode statistics over the episodes of every rank.

    Sums each key and counts the episodes that have it, all-reduces both (one collective of
    ``2 * len(keys) + 1`` float64 numbers) and divides: the mean over all finished episodes of
    the job, not a mean of per-rank means (a rank that finished no episode weighs nothing).

    Args:
        episodes: This rank's finished-episode summaries (``{key: float}``).
        keys: The statistics to average; the same list, in the same order, on every rank.

    Returns:
        ``(means, count)``: ``means[key]`` for every key at least one episode has (keys no
        episode has are left out), and the number of finished episodes over all ranks.
    """
    sums = torch.zeros(2 * len(keys) + 1, dtype=torch.float64)
    for e in episodes:
        for i, k in enumerate(keys):
            if k in e:
                sums[i] += float(e[k])
                sums[len(keys) + i] += 1.0
    sums[-1] = float(len(episodes))
    sums = all_reduce_sum(sums)
    means = {
        k: float(sums[i] / sums[len(keys) + i])
        for i, k in enumerate(keys)
        if sums[len(keys) + i] > 0
    }
    return means, int(sums[-1])


def global_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased standard deviation over dim 0 of ``x`` concatenated across ranks.

    Equals ``cat(x over ranks).mean(0)`` and ``.std(0)`` (Bessel-corrected, as
    ``torch.std``), from one all-reduce of the count, the sums and the sums of squares
    (float64, so the one-pass variance keeps float32 accuracy).

    Args:
        x: ``(N, ...)``; ``N`` may differ across ranks, the trailing shape may not.

    Returns:
        ``(mean (...), std (...))`` in ``x``'s dtype and device (std NaN for a single element,
        as torch's).
    """
    if not is_initialized():
        return x.mean(0), x.std(0)
    flat = x.detach().reshape(x.shape[0], -1).double()
    n = torch.tensor([float(x.shape[0])], dtype=torch.float64, device=x.device)
    stats = all_reduce_sum(torch.cat([n, flat.sum(0), flat.pow(2).sum(0)]))
    count, rest = stats[0], stats[1:]
    total, squares = rest.chunk(2)
    mean = total / count
    var = (squares - count * mean.pow(2)).clamp_min(0.0) / (count - 1)
    shape = x.shape[1:]
    return mean.reshape(shape).to(x.dtype), var.sqrt().reshape(shape).to(x.dtype)


def _buckets(params: Sequence[torch.Tensor], cap_bytes: int) -> list[list[torch.Tensor]]:
    """Consecutive groups of tensors of at most ``cap_bytes`` (one tensor may exceed it)."""
    groups: list[list[torch.Tensor]] = []
    size = 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        if not groups or (size + nbytes > cap_bytes and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += nbytes
    return groups


def all_reduce_gradients(
    params: Iterable[torch.nn.Parameter], cap_bytes: int = BUCKET_BYTES
) -> None:
    """Sum the parameters' ``.grad`` over ranks, in place (no-op without a process group).

    Callers scale each rank's loss so that the sum is the gradient they want (the PPO update
    weights a micro-batch by its steps over the global steps of the minibatch). A parameter
    whose gradient is None on every rank keeps None, so the optimizer skips it exactly as in a
    single process (e.g. the actor during the value-only warm-up); one with a gradient on some
    rank only gets zeros elsewhere before the sum. Gradients are flattened into buckets of at
    most ``cap_bytes`` per collective.

    Args:
        params: The same parameters, in the same order, on every rank.
        cap_bytes: Bucket size, bytes.
    """
    if not is_initialized() or dist.get_world_size() == 1:
        return
    params = list(params)
    has = torch.tensor(
        [p.grad is not None for p in params], dtype=torch.int64, device=collective_device()
    )
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    grads: list[torch.Tensor] = []
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    for group in _buckets(grads, cap_bytes):
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def barrier() -> None:
    """Wait until every rank gets here (no-op without a process group)."""
    if is_initialized():
        dist.barrier()


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (in place).

    What ``DistributedDataParallel`` does at construction; no-op without a process group.
    """
    if not is_initialized() or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=src)


__all__ = [
    "BUCKET_BYTES",
    "DEFAULT_TIMEOUT_S",
    "RANK_SEED_STRIDE",
    "DistContext",
    "all_reduce_gradients",
    "all_reduce_mean",
    "all_reduce_min",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "backend_for",
    "broadcast_module",
    "collective_device",
    "context",
    "episode_means",
    "global_mean_std",
    "init_distributed",
    "is_initialized",
    "rank_device",
    "rank_seed",
    "shard",
    "shutdown",
]
