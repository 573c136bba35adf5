"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: behavior + critic stages
on a tiny dataset, then every rank reports whether its weights equal rank 0's."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from training.config import BehaviorConfig, CriticConfig, RunConfig
from training.data import load_minari
from training.distributed import DistContext
from training.stages import train_behavior, train_critic


def main() -> None:
    dataset_id, output = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    ctx = DistContext.from_environment(torch.device("cpu"))
    run = RunConfig(
        dataset_ids=[dataset_id], output=str(output), log_every=5, checkpoint_every=10, video=False,
        behavior=BehaviorConfig(steps=12, batch_size=16, hidden_dim=32, num_blocks=1, ff_mult=2),
        critic=CriticConfig(steps=12, batch_size=16, hidden_dim=32),
    )
    data = load_minari(dataset_id)
    policy = train_behavior(run, data, dist=ctx, progress=False)
    critic = train_critic(run, data, dist=ctx, progress=False)
    report = {
        "rank": ctx.rank,
        "world_size": ctx.world_size,
        "policy_in_sync": ctx.all_ranks_equal(policy),
        "critic_in_sync": ctx.all_ranks_equal(critic),
        "checksum": float(sum(float(p.detach().double().sum()) for p in policy.parameters())),
    }
    (output / f"rank{ctx.rank}.json").write_text(json.dumps(report))
    if dist.is_initialized():
        dist.barrier()  # both ranks finished writing before either tears the group down
        dist.destroy_process_group()
    # Skip interpreter finalization: gloo's worker threads can still be torn down there and, on a
    # loaded machine, abort the process ("terminate called without an active exception") after all
    # work is done (seen once in CI; pytorch/pytorch#179291 describes the same teardown race).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
