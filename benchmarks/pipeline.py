"""The whole EDA pipeline at the default budget: wall time per stage and normalised score.

For each dataset: ``eda-train all`` with the defaults (behavior and critic side by side), then
20 evaluation episodes of the aligned policy, beside the critic's own policies on the same data:
AWR (IQL's policy extraction) and "greedy" (best of 16 behavior samples by Q).

    python benchmarks/pipeline.py --datasets hopper-medium-replay --seed 0
    python benchmarks/pipeline.py --datasets walker2d-medium-expert --seed 0 --no-baselines

A run folder that already exists is resumed (finished stages are not trained again; their wall
times come from the stages' step logs in <run>/metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from eda_policy import EDAPolicy, evaluate_policy
from eda_policy.evaluation import normalized_score, run_episodes
from training.awr import AWRConfig, awr_actor, train_awr
from training.config import RunConfig
from training.pipeline import load_run_data, run_all
from training.stages import BEHAVIOR_DIR, CRITIC_DIR, POLICY_DIR, TrainingTensors, load_critic

DATASETS = {
    "hopper-medium-replay": ["eda/hopper/medium-replay-v0"],
    "hopper-medium": ["eda/hopper/medium-v0"],
    "hopper-medium-expert": ["eda/hopper/medium-v0", "eda/hopper/expert-v0"],
    "walker2d-medium": ["eda/walker2d/medium-v0"],
    "walker2d-medium-expert": ["eda/walker2d/medium-v0", "eda/walker2d/expert-v0"],
}


def score_stats(returns: list[float], ref_min: float, ref_max: float) -> dict[str, float]:
    scores = normalized_score(np.asarray(returns), ref_min, ref_max)
    return {"score_mean": float(scores.mean()), "score_std": float(scores.std()), "return_mean": float(np.mean(returns))}


def training_seconds(run_dir: Path, stage: str) -> float:
    """Seconds spent in a stage's training steps, from its metrics (robust to resumed runs)."""
    total, last = 0.0, 0
    for line in (run_dir / "metrics" / f"{stage}.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "steps_per_s" in row:
            total += (row["step"] - last) / row["steps_per_s"]
            last = row["step"]
    return total


def critic_baselines(output: Path, data, behavior: EDAPolicy, episodes: int, eval_seed: int, awr_steps: int,
                     seed: int) -> tuple[dict[str, dict], float]:
    """The critic's own policies on the same data: greedy best-of-16 behavior samples, and AWR.

    Returns their score rows and the AWR training seconds.
    """
    ref = (data.ref_min_score, data.ref_max_score)
    rows: dict[str, dict] = {}
    critic = load_critic(output / CRITIC_DIR, data.obs_dim, data.act_dim)
    greedy = EDAPolicy.from_pretrained(output / POLICY_DIR)
    greedy.load_state_dict({**greedy.state_dict(), **behavior.state_dict()}, strict=True)
    result = evaluate_policy(greedy, num_episodes=episodes, seed=eval_seed, num_candidates=16)
    rows["critic greedy (best of 16 behavior samples)"] = score_stats(result.returns, *ref)

    tensors = TrainingTensors.build(data, torch.device("cpu"))
    began = time.perf_counter()
    awr = train_awr(tensors.obs, tensors.actions, critic, AWRConfig(steps=awr_steps), seed=seed)
    awr_time = time.perf_counter() - began
    mean, std = data.observation_stats()
    returns, _ = run_episodes(awr_actor(awr, mean, std, data.action_low, data.action_high), data.env_id, episodes, seed=eval_seed)
    rows[f"critic AWR policy ({awr_steps} steps)"] = score_stats(returns, *ref)
    return rows, awr_time


def bench_dataset(name: str, output: Path, seed: int, episodes: int, awr_steps: int, baselines: bool = True) -> dict:
    run = RunConfig(dataset_ids=DATASETS[name], output=str(output), seed=seed, eval_episodes=episodes)
    run.apply_preset()
    data = load_run_data(run)
    began = time.perf_counter()
    policy, results = run_all(run, data=data, progress=False)
    total = time.perf_counter() - began
    stored = json.loads((output / POLICY_DIR / "results.json").read_text())
    timings = stored.get("timings", results.get("timings", {}))
    timings.update({f"{stage}_train_s": training_seconds(output, stage) for stage in ("behavior", "critic", "alignment")})
    timings["this_invocation_s"] = total
    ref = (data.ref_min_score, data.ref_max_score)
    eval_seed = seed + 10_000
    rows: dict[str, dict] = {}

    result = evaluate_policy(policy, num_episodes=episodes, seed=eval_seed, num_candidates=1)
    rows["EDA (1 candidate)"] = score_stats(result.returns, *ref)
    result = evaluate_policy(policy, num_episodes=episodes, seed=eval_seed, num_candidates=4)
    rows["EDA (best of 4 by Q, the default)"] = score_stats(result.returns, *ref)

    behavior = EDAPolicy.from_pretrained(output / BEHAVIOR_DIR)
    result = evaluate_policy(behavior, num_episodes=episodes, seed=eval_seed)
    rows["behavior model only (stage 1)"] = score_stats(result.returns, *ref)
    if baselines:
        baseline_rows, timings["awr_s"] = critic_baselines(output, data, behavior, episodes, eval_seed, awr_steps, seed)
        rows.update(baseline_rows)
    return {"dataset": name, "dataset_ids": DATASETS[name], "seed": seed, "episodes": episodes,
            "timings_s": timings, "policies": rows, "run_config": run.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["hopper-medium-replay", "hopper-medium"], choices=sorted(DATASETS))
    parser.add_argument("--runs", default="runs/bench", help="folder for the run folders (<runs>/<dataset>-s<seed>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--awr-steps", type=int, default=50_000)
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the critic's own policies (greedy, AWR): EDA and the behavior model only")
    parser.add_argument("--json", default=None,
                        help="report path (default benchmarks/results/pipeline/<datasets>-s<seed>.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    json_path = Path(args.json or f"benchmarks/results/pipeline/{'+'.join(args.datasets)}-s{args.seed}.json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    report = []
    for name in args.datasets:
        entry = bench_dataset(name, Path(args.runs) / f"{name}-s{args.seed}", args.seed, args.episodes,
                              args.awr_steps, baselines=not args.no_baselines)
        report.append(entry)
        json_path.write_text(json.dumps(report, indent=2))  # after each dataset, so finished ones are kept
    print("| dataset | policy | normalised score (mean +- std) | return |")
    print("| --- | --- | --- | --- |")
    for entry in report:
        for label, row in entry["policies"].items():
            print(f"| {entry['dataset']} | {label} | {row['score_mean']:.1f} +- {row['score_std']:.1f} | {row['return_mean']:.0f} |")
    print()
    print("| dataset | behavior train s | critic train s (side by side) | alignment train s | AWR s |")
    print("| --- | --- | --- | --- | --- |")
    for entry in report:
        t = entry["timings_s"]
        print(f"| {entry['dataset']} | {t['behavior_train_s']:.0f} | {t['critic_train_s']:.0f} | "
              f"{t['alignment_train_s']:.0f} | {t.get('awr_s', float('nan')):.0f} |")
    print(f"\nwrote {json_path}")


if __name__ == "__main__":
    main()
