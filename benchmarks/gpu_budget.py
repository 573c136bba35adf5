"""EDA with a GPU's budget: paper-sized batches and as many steps as a wall-clock deadline allows,
many runs side by side on one GPU; evaluation afterwards on the CPU.

The default budget (``eda-train all``) is sized for 2 CPU cores: 30k behavior steps of batch 256.
This script trains the same method with the paper's batch sizes (behavior 2048, alignment 256
states x 16 actions, alignment on every state of the dataset) and grows each stage's step count
to fit a deadline, measured as it goes. The critic keeps the default 100k steps of batch 256, the
same as the d3rlpy baselines. Three commands, two machines:

    # 1. here: the Minari datasets as compact .npz files (a GPU machine needs neither Minari nor MuJoCo)
    python benchmarks/gpu_budget.py pack --out .gpu_data
    # 2. on the GPU machine: every job until the deadlines (seconds from start), results as tarballs
    python benchmarks/gpu_budget.py train --data .gpu_data --runs runs/gpu --device cuda \\
        --jobs hopper-medium-replay:0,1,2 walker2d-medium:0,1,2 hopper-medium:0 \\
        --critic-deadline 240 --behavior-deadline 300 --align-deadline 450 --tar-to OUT_DIR
    # 3. here: unpack, 20 evaluation episodes each (best of 4, 1 candidate, behavior model), reports
    python benchmarks/gpu_budget.py evaluate --tars OUT_DIR --runs runs/gpu \\
        --report-dir benchmarks/results/pipeline_gpu

Reports have the layout of ``benchmarks/pipeline.py``'s, so ``benchmarks/compare.py`` reads them.
Each stage resumes exactly (``eda-train``'s checkpoints), so growing a stage in chunks trains the
same model as one uninterrupted run of the final step count.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tarfile
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from eda_policy import EDAPolicy
from training.config import AlignmentConfig, BehaviorConfig, CriticConfig, RunConfig
from training.data import TransitionDataset, concatenate, from_arrays
from training.pipeline import save_run_config
from training.publish import export_policy
from training.stages import BEHAVIOR_DIR, CRITIC_DIR, POLICY_DIR, load_critic, train_alignment, train_behavior, train_critic

CRITIC_DONE = "critic_done.json"
TIMINGS = "timings.json"


# ------------------------------------------------------------------------------ data transport
def pack_dataset(data: TransitionDataset, path: Path) -> None:
    """Write ``data`` without ``next_observations`` (rebuilt from the next row inside an episode)."""
    if data.episode_ends is None:
        raise ValueError("packing needs episode_ends to rebuild next observations")
    ends = np.asarray(data.episode_ends, dtype=np.int64)
    inner = np.ones(len(data), dtype=bool)
    inner[ends] = False
    rows = np.flatnonzero(inner)
    if not np.array_equal(data.next_observations[rows], data.observations[rows + 1]):
        raise ValueError("next_observations differ from the following observation inside an episode")
    payload = {
        "observations": data.observations, "actions": data.actions, "rewards": data.rewards,
        "terminals": data.terminals, "episode_ends": ends, "last_next_observations": data.next_observations[ends],
        "action_low": data.action_low, "action_high": data.action_high, "episode_returns": data.episode_returns,
        "env_id": np.array(data.env_id or ""), "dataset_ids": np.array(data.dataset_ids, dtype=np.str_),
        "ref_min_score": np.array(data.ref_min_score, dtype=np.float64),
        "ref_max_score": np.array(data.ref_max_score, dtype=np.float64),
    }
    np.savez_compressed(path, **payload)


def packed_name(dataset_id: str) -> str:
    return dataset_id.replace("/", "__") + ".npz"


def packed_ids(data_dir: Path, name: str) -> list[str]:
    """The Minari ids a benchmark name stands for, from ``datasets.json`` in ``data_dir``."""
    index = json.loads((data_dir / "datasets.json").read_text())
    if name not in index:
        raise SystemExit(f"{name!r} was not packed into {data_dir}; packed: {sorted(index)}")
    return index[name]


def load_packed(data_dir: Path, name: str) -> TransitionDataset:
    """The dataset a benchmark name stands for, its packed parts concatenated."""
    parts = [unpack_dataset(data_dir / packed_name(dataset_id)) for dataset_id in packed_ids(data_dir, name)]
    return parts[0] if len(parts) == 1 else concatenate(parts)


def unpack_dataset(path: Path) -> TransitionDataset:
    """Inverse of :func:`pack_dataset`, through the validating :func:`training.data.from_arrays`."""
    with np.load(path, allow_pickle=False) as z:
        obs, ends = z["observations"], z["episode_ends"]
        next_obs = np.empty_like(obs)
        next_obs[:-1] = obs[1:]
        next_obs[ends] = z["last_next_observations"]
        return from_arrays(
            obs, z["actions"], z["rewards"], next_obs, z["terminals"],
            action_low=z["action_low"], action_high=z["action_high"], episode_ends=ends,
            episode_returns=z["episode_returns"], env_id=str(z["env_id"]) or None,
            dataset_ids=[str(x) for x in z["dataset_ids"]],
            ref_min_score=float(z["ref_min_score"]), ref_max_score=float(z["ref_max_score"]),
        )


# ------------------------------------------------------------------------------ training
def gpu_run_config(dataset_ids: list[str], output: Path, seed: int, device: str, args: argparse.Namespace) -> RunConfig:
    """The GPU budget: paper batch sizes, step caps that the deadlines normally cut first."""
    run = RunConfig(
        dataset_ids=dataset_ids, output=str(output), seed=seed, device=device, threads=1,
        eval_episodes=20, log_every=500, checkpoint_every=2_000, video=False,
        behavior=BehaviorConfig(steps=args.behavior_max_steps, batch_size=2048),
        critic=CriticConfig(steps=args.critic_steps, batch_size=256),
        alignment=AlignmentConfig(steps=args.align_max_steps, batch_states=256, num_actions=16, num_states=0),
    )
    run.apply_preset()
    return run


def grow_to_deadline(train: Callable[[], object], set_steps: Callable[[int], None], *, first: int, cap: int,
                     deadline: float, granularity: int = 500) -> int:
    """Train ``first`` steps, then extend the step target by what the measured rate fits before
    ``deadline`` (epoch seconds): half the remaining time per chunk while much is left, so the
    rate is measured again as other jobs finish. Returns the final step count."""
    steps, done = min(first, cap), 0
    while True:
        set_steps(steps)
        began = time.time()
        train()
        rate = (steps - done) / max(time.time() - began, 1e-6)
        done = steps
        left = deadline - time.time()
        if steps >= cap or left < 10:
            return steps
        add = int(rate * left * (0.5 if left > 90 else 0.85)) // granularity * granularity
        if add < granularity:
            return steps
        steps = min(cap, steps + add)


def _timed(timings: dict[str, float], key: str, fn: Callable[[], object]) -> None:
    began = time.time()
    fn()
    timings[key] = time.time() - began


def critic_job(name: str, output: str, seed: int, device: str, args: argparse.Namespace, deadline: float) -> None:
    torch.set_num_threads(1)
    data = load_packed(Path(args.data), name)
    run = gpu_run_config(data.dataset_ids, Path(output), seed, device, args)
    timings: dict[str, float] = {}
    _timed(timings, "critic_s", lambda: grow_to_deadline(
        lambda: train_critic(run, data, progress=False), lambda n: setattr(run.critic, "steps", n),
        first=2_000, cap=args.critic_steps, deadline=deadline))
    (Path(output) / CRITIC_DONE).write_text(json.dumps({"steps": run.critic.steps, **timings}))


def policy_job(name: str, output: str, seed: int, device: str, args: argparse.Namespace,
               behavior_deadline: float, align_deadline: float) -> None:
    """Behavior to its deadline, wait for the critic, alignment to its deadline, export (no evaluation)."""
    torch.set_num_threads(1)
    out = Path(output)
    data = load_packed(Path(args.data), name)
    run = gpu_run_config(data.dataset_ids, out, seed, device, args)
    save_run_config(run)
    timings: dict[str, float] = {}
    _timed(timings, "behavior_s", lambda: grow_to_deadline(
        lambda: train_behavior(run, data, progress=False), lambda n: setattr(run.behavior, "steps", n),
        first=2_000, cap=args.behavior_max_steps, deadline=behavior_deadline))
    began = time.time()
    while not (out / CRITIC_DONE).exists():
        if time.time() > align_deadline:
            raise TimeoutError(f"{out}: the critic did not finish before the alignment deadline")
        time.sleep(1.0)
    timings["critic_wait_s"] = time.time() - began
    critic_info = json.loads((out / CRITIC_DONE).read_text())
    run.critic.steps = critic_info["steps"]
    timings["critic_s"] = critic_info["critic_s"]
    reference = EDAPolicy.from_pretrained(out / BEHAVIOR_DIR, device=device)
    critic = load_critic(out / CRITIC_DIR, data.obs_dim, data.act_dim, device)
    trained: dict[str, EDAPolicy] = {}

    def align_once() -> None:
        trained["policy"] = train_alignment(run, data, reference, critic, progress=False)

    _timed(timings, "alignment_s", lambda: grow_to_deadline(
        align_once, lambda n: setattr(run.alignment, "steps", n),
        first=1_000, cap=args.align_max_steps, deadline=align_deadline))
    save_run_config(run)
    (out / TIMINGS).write_text(json.dumps(timings, indent=2))
    export_policy(trained["policy"].to("cpu"), out / POLICY_DIR, evaluation=None, repo_id=f"eda-policy/{out.name}",
                  training_config=run.to_dict(), extra_results={"timings": timings}, video=False)


def _guarded(fn: Callable[..., None], log: Path, *fn_args: object) -> None:
    """Run a job, writing its traceback beside its outputs instead of losing it with the process."""
    try:
        fn(*fn_args)
    except BaseException:
        log.write_text(traceback.format_exc())
        raise


def parse_jobs(specs: list[str]) -> list[tuple[str, int]]:
    jobs = []
    for spec in specs:
        name, _, seeds = spec.partition(":")
        if not seeds:
            raise SystemExit(f"--jobs entries look like NAME:SEED[,SEED...], got {spec!r}")
        jobs += [(name, int(s)) for s in seeds.split(",")]
    return jobs


def train_all(args: argparse.Namespace) -> int:
    start = time.time()
    behavior_deadline = start + args.behavior_deadline
    critic_deadline = start + args.critic_deadline
    align_deadline = start + args.align_deadline
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for name, seed in parse_jobs(args.jobs):
        packed_ids(Path(args.data), name)  # fail here, before any job starts, if it was not packed
        output = Path(args.runs) / f"{name}-s{seed}"
        output.mkdir(parents=True, exist_ok=True)
        procs.append((output, ctx.Process(target=_guarded, args=(
            critic_job, output / "critic_error.txt", name, str(output), seed, args.device, args, critic_deadline))))
        procs.append((output, ctx.Process(target=_guarded, args=(
            policy_job, output / "policy_error.txt", name, str(output), seed, args.device, args,
            behavior_deadline, align_deadline))))
    for _, proc in procs:
        proc.start()
    for output, proc in procs:
        proc.join()
        print(f"{output.name}: a job ended with exit code {proc.exitcode} at {time.time() - start:.0f} s", flush=True)
    if args.tar_to:
        write_tarballs(Path(args.runs), Path(args.tar_to))
    return 0 if all(p.exitcode == 0 for _, p in procs) else 1


def _wanted(path: Path) -> bool:
    """What comes back from the GPU machine: configs, weights, metrics, logs; no resume state."""
    return "state" not in path.parts and not path.name.endswith(".tmp") and path.name != "critic.safetensors"


def write_tarballs(runs: Path, dest: Path, limit_bytes: int = 15 * 2**20) -> None:
    """Runs packed into as few .tar.gz files as fit ``limit_bytes`` each (a run is never split)."""
    dest.mkdir(parents=True, exist_ok=True)
    groups: list[list[tuple[Path, list[Path]]]] = [[]]
    sizes = [0]
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        files = [f for f in sorted(run_dir.rglob("*")) if f.is_file() and _wanted(f.relative_to(runs))]
        size = sum(f.stat().st_size for f in files)
        if groups[-1] and sizes[-1] + size > limit_bytes:
            groups.append([])
            sizes.append(0)
        groups[-1].append((run_dir, files))
        sizes[-1] += size
    for i, group in enumerate(groups):
        with tarfile.open(dest / f"runs-{i}.tar.gz", "w:gz") as tar:
            for _, files in group:
                for f in files:
                    tar.add(f, arcname=str(f.relative_to(runs)))
        print(f"runs-{i}.tar.gz: {[run_dir.name for run_dir, _ in group]}", flush=True)


# ------------------------------------------------------------------------------ evaluation
def evaluate_runs(args: argparse.Namespace) -> int:
    """Unpack tarballs, then 20 episodes per policy variant, one report per run in pipeline.py's layout."""
    from pipeline import score_stats, training_seconds  # benchmarks/pipeline.py, beside this file

    from eda_policy import evaluate_policy

    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    for tar_path in sorted(Path(args.tars).glob("*.tar.gz")) if args.tars else []:
        with tarfile.open(tar_path) as tar:
            tar.extractall(runs, filter="data")
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for run_dir in sorted(p for p in runs.iterdir() if (p / POLICY_DIR / "config.json").exists()):
        report_path = report_dir / f"{run_dir.name}.json"
        if report_path.exists() and not args.force:
            continue
        run = RunConfig.from_dict(json.loads((run_dir / "run_config.json").read_text()))
        policy = EDAPolicy.from_pretrained(run_dir / POLICY_DIR)
        behavior = EDAPolicy.from_pretrained(run_dir / BEHAVIOR_DIR)
        ref = (policy.config.ref_min_score, policy.config.ref_max_score)
        variants = {  # the labels benchmarks/pipeline.py writes, so compare.py reads both alike
            f"EDA (best of {policy.config.num_candidates} by Q, the default)": (policy, {}),
            "EDA (1 candidate)": (policy, {"num_candidates": 1}),
            "behavior model only (stage 1)": (behavior, {}),
        }
        scores = {}
        for label, (pol, kwargs) in variants.items():
            result = evaluate_policy(pol, num_episodes=args.episodes, seed=run.seed + 10_000, **kwargs)
            scores[label] = score_stats(result.returns, *ref)
            print(f"{run_dir.name}: {label}: {scores[label]['score_mean']:.1f}", flush=True)
        gpu_timings = json.loads((run_dir / TIMINGS).read_text())
        timings = {
            "behavior_train_s": training_seconds(run_dir, "behavior"),
            "critic_train_s": training_seconds(run_dir, "critic"),
            "alignment_train_s": training_seconds(run_dir, "alignment"),
            **gpu_timings,
        }
        name = run_dir.name.rsplit("-s", 1)[0]
        report = [{"dataset": name, "dataset_ids": run.dataset_ids, "seed": run.seed, "episodes": args.episodes,
                   "device": args.device_name, "timings_s": timings, "policies": scores, "run_config": run.to_dict()}]
        report_path.write_text(json.dumps(report, indent=2))
    return 0


# ------------------------------------------------------------------------------ command line
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="Minari datasets -> compact .npz (here, with Minari installed)")
    pk.add_argument("--out", type=Path, default=Path(".gpu_data"))
    pk.add_argument("--datasets", nargs="*", default=None)
    tr = sub.add_parser("train", help="train every job until its deadlines (on the GPU machine)")
    tr.add_argument("--data", type=Path, default=Path(".gpu_data"))
    tr.add_argument("--runs", type=Path, default=Path("runs/gpu"))
    tr.add_argument("--device", default="cuda")
    tr.add_argument("--jobs", nargs="+", required=True, help="NAME:SEED[,SEED...], NAME a packed dataset")
    tr.add_argument("--critic-deadline", type=float, default=240, help="seconds from start")
    tr.add_argument("--behavior-deadline", type=float, default=300, help="seconds from start")
    tr.add_argument("--align-deadline", type=float, default=450, help="seconds from start")
    tr.add_argument("--critic-steps", type=int, default=100_000)
    tr.add_argument("--behavior-max-steps", type=int, default=1_000_000)
    tr.add_argument("--align-max-steps", type=int, default=50_000)
    tr.add_argument("--tar-to", default=None, help="write the runs as .tar.gz files here when done")
    ev = sub.add_parser("evaluate", help="unpack and evaluate on the CPU (here)")
    ev.add_argument("--tars", default=None, help="folder of .tar.gz files from `train --tar-to`")
    ev.add_argument("--runs", type=Path, default=Path("runs/gpu"))
    ev.add_argument("--report-dir", type=Path, default=Path("benchmarks/results/pipeline_gpu"))
    ev.add_argument("--episodes", type=int, default=20)
    ev.add_argument("--device-name", default="one NVIDIA GPU", help="what trained it, for the report")
    ev.add_argument("--force", action="store_true", help="evaluate again where a report exists")
    args = p.parse_args()
    if args.command == "pack":
        from pipeline import DATASETS  # benchmarks/pipeline.py, beside this file

        from training.data import load_minari

        args.out.mkdir(parents=True, exist_ok=True)
        index = {name: DATASETS[name] for name in (args.datasets or sorted(DATASETS))}
        for dataset_id in sorted({i for ids in index.values() for i in ids}):
            path = args.out / packed_name(dataset_id)
            pack_dataset(load_minari(dataset_id), path)
            print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB", flush=True)
        (args.out / "datasets.json").write_text(json.dumps(index, indent=2))
        return 0
    if args.command == "train":
        return train_all(args)
    return evaluate_runs(args)


if __name__ == "__main__":
    raise SystemExit(main())
