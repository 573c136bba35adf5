"""The whole method on one dataset: behavior and critic (side by side), alignment, evaluation, export."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import torch

from eda_policy import EDAPolicy, evaluate_policy

from .config import RunConfig
from .data import TransitionDataset, load_minari
from .distributed import DistContext
from .publish import export_policy
from .stages import BEHAVIOR_DIR, CRITIC_DIR, POLICY_DIR, load_critic, train_alignment, train_behavior, train_critic


def load_run_data(run: RunConfig) -> TransitionDataset:
    return load_minari(run.dataset_ids, download=run.download)


def save_run_config(run: RunConfig) -> None:
    out = Path(run.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(run.to_dict(), indent=2))


def _critic_worker(run_dict: dict[str, Any]) -> None:
    """Entry point of the side process that trains the critic while the main process trains behavior."""
    run = RunConfig.from_dict(run_dict)
    torch.set_num_threads(run.threads)
    train_critic(run, load_run_data(run), progress=False)


def run_all(
    run: RunConfig,
    *,
    data: TransitionDataset | None = None,
    progress: bool = True,
    parallel: bool = True,
) -> tuple[EDAPolicy, dict[str, Any]]:
    """Stages 1-3, final evaluation and export to ``<output>/policy``. Re-running resumes.

    With ``parallel`` (and one process, no torchrun), the critic trains in a second process while
    behavior pretraining runs here: on a 2-core machine two 1-thread jobs use it best.
    """
    torch.set_num_threads(run.threads)
    out = Path(run.output)
    dist = DistContext.from_environment(torch.device(run.device))
    if dist.is_main:
        save_run_config(run)
    data = data if data is not None else load_run_data(run)
    timings: dict[str, float] = {}
    side = None
    if parallel and not dist.enabled and run.critic.steps > 0:
        side = multiprocessing.get_context("spawn").Process(target=_critic_worker, args=(run.to_dict(),))
        began = time.perf_counter()
        side.start()
    else:
        began = time.perf_counter()
        train_critic(run, data, dist=dist, progress=progress)
        timings["critic_s"] = time.perf_counter() - began
    began_behavior = time.perf_counter()
    train_behavior(run, data, dist=dist, progress=progress)
    timings["behavior_s"] = time.perf_counter() - began_behavior
    if side is not None:
        side.join()
        timings["critic_s"] = time.perf_counter() - began
        if side.exitcode != 0:
            raise RuntimeError(f"the critic process failed (exit code {side.exitcode}); re-run to resume it")
    dist.barrier()
    device = torch.device(run.device)
    reference = EDAPolicy.from_pretrained(out / BEHAVIOR_DIR, device=device)
    critic = load_critic(out / CRITIC_DIR, data.obs_dim, data.act_dim, device)
    began = time.perf_counter()
    policy = train_alignment(run, data, reference, critic, dist=dist, progress=progress)
    timings["alignment_s"] = time.perf_counter() - began
    results: dict[str, Any] = {"timings": timings}
    if dist.is_main:
        began = time.perf_counter()
        evaluation = evaluate_policy(policy, num_episodes=run.eval_episodes, seed=run.seed + 10_000)
        timings["evaluation_s"] = time.perf_counter() - began
        export_policy(
            policy,
            out / POLICY_DIR,
            evaluation=evaluation,
            repo_id=f"eda-policy/{Path(run.output).name}",
            training_config=run.to_dict(),
            extra_results=results,
            video=run.video,
            video_seed=run.seed,
        )
        from .metrics import plot_curves

        plot_curves(out / "metrics", out / "training_curves.png")
        results["evaluation"] = evaluation.to_dict()
    return policy, results
