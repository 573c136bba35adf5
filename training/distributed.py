"""Data parallelism under ``torchrun``: gloo on CPU, nccl on GPU; a no-op in a single process.

Every rank holds the full model, draws its own batches (seed + rank) and the gradients are
averaged with one all-reduce per step, so all ranks take identical optimizer steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, device: torch.device) -> "DistContext":
        """Join the process group that ``torchrun`` describes in the environment, if any."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size())

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if not self.enabled:
            return
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        if not self.enabled:
            return
        params = [p for p in parameters if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_ranks_equal(self, module: nn.Module) -> bool:
        """True when every rank holds the same parameters as rank 0 (a sync check)."""
        if not self.enabled:
            return True
        flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        same = torch.tensor([int(torch.equal(flat, reference))])
        dist.all_reduce(same, op=dist.ReduceOp.MIN)
        return bool(same.item())
