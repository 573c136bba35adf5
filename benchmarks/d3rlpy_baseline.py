"""d3rlpy IQL / TD3+BC baseline on the same offline datasets the EDA policies train on.

Runs in its own virtual environment (d3rlpy 2.8 pins gymnasium 1.0); use the wrapper:

    bash benchmarks/run_d3rlpy.sh --dataset hopper-medium-replay --algo iql --seed 0 \
        --steps 100000 --episodes 20 --out benchmarks/results/d3rlpy
    bash benchmarks/run_d3rlpy.sh --summarize --out benchmarks/results/d3rlpy

Each run trains for ``--steps`` gradient steps (batch 256, one epoch, no evaluators), then rolls
out the greedy policy for ``--episodes`` episodes with reset seeds 10000, 10001, ... and writes
``<out>/<dataset>-<algo>-s<seed>.json`` with the D4RL-normalised score, returns and wall times.
The datasets are read with ``minari`` from ``MINARI_DATASETS_PATH`` (default
/work/shared/datasets), or straight from their HDF5 files if minari cannot load them.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MINARI_DATASETS_PATH", "/work/shared/datasets")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

DATASETS: dict[str, dict] = {
    "hopper-medium": {"ids": ["eda/hopper/medium-v0"], "env": "Hopper-v5"},
    "hopper-medium-replay": {"ids": ["eda/hopper/medium-replay-v0"], "env": "Hopper-v5"},
    "hopper-medium-expert": {
        "ids": ["eda/hopper/medium-v0", "eda/hopper/expert-v0"],
        "env": "Hopper-v5",
    },
    "walker2d-medium": {"ids": ["eda/walker2d/medium-v0"], "env": "Walker2d-v5"},
    "walker2d-medium-expert": {
        "ids": ["eda/walker2d/medium-v0", "eda/walker2d/expert-v0"],
        "env": "Walker2d-v5",
    },
}
ALGOS = ("iql", "td3bc")
EVAL_SEED_BASE = 10000


# --------------------------------------------------------------------------------------------
# data


def _episodes_minari(dataset_id: str) -> tuple[list[dict], dict]:
    import minari

    ds = minari.load_dataset(dataset_id)
    episodes = []
    for ep in ds.iterate_episodes():
        episodes.append(
            {
                "observations": np.asarray(ep.observations),
                "actions": np.asarray(ep.actions),
                "rewards": np.asarray(ep.rewards),
                "terminations": np.asarray(ep.terminations, dtype=bool),
                "truncations": np.asarray(ep.truncations, dtype=bool),
            }
        )
    meta_path = Path(os.environ["MINARI_DATASETS_PATH"]) / dataset_id / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if "ref_min_score" not in meta:
        meta["ref_min_score"] = ds.storage.metadata["ref_min_score"]
        meta["ref_max_score"] = ds.storage.metadata["ref_max_score"]
    return episodes, meta


def _episodes_h5py(dataset_id: str) -> tuple[list[dict], dict]:
    import h5py

    root = Path(os.environ["MINARI_DATASETS_PATH"]) / dataset_id / "data"
    meta = json.loads((root / "metadata.json").read_text())
    episodes = []
    with h5py.File(root / "main_data.hdf5", "r") as f:
        # groups are named episode_<n>; order them numerically
        names = sorted(f.keys(), key=lambda k: int(k.rsplit("_", 1)[-1]))
        for name in names:
            g = f[name]
            episodes.append(
                {
                    "observations": g["observations"][()],
                    "actions": g["actions"][()],
                    "rewards": g["rewards"][()],
                    "terminations": g["terminations"][()].astype(bool),
                    "truncations": g["truncations"][()].astype(bool),
                }
            )
    return episodes, meta


def load_episodes(dataset_id: str) -> tuple[list[dict], dict, str]:
    try:
        episodes, meta = _episodes_minari(dataset_id)
        how = "minari"
    except Exception as exc:  # minari version mismatch etc.: read the HDF5 file directly
        print(f"minari.load_dataset({dataset_id!r}) failed ({exc!r}); reading HDF5 with h5py")
        episodes, meta = _episodes_h5py(dataset_id)
        how = "h5py"
    return episodes, meta, how


def build_mdp_dataset(episodes: list[dict]):
    """Flat arrays for d3rlpy: one row per step, the last observation of each episode dropped.

    terminal = environment termination only; timeout marks the end of every episode that did not
    terminate (time-limit truncation, or the end of the recorded data).
    """
    import d3rlpy

    obs, act, rew, term, tout = [], [], [], [], []
    for ep in episodes:
        n = len(ep["actions"])
        obs.append(np.asarray(ep["observations"][:n], dtype=np.float32))
        act.append(np.asarray(ep["actions"], dtype=np.float32))
        rew.append(np.asarray(ep["rewards"], dtype=np.float32))
        t = np.zeros(n, dtype=np.float32)
        o = np.zeros(n, dtype=np.float32)
        if bool(ep["terminations"][-1]):
            t[-1] = 1.0
        else:
            o[-1] = 1.0
        term.append(t)
        tout.append(o)
    return d3rlpy.dataset.MDPDataset(
        observations=np.concatenate(obs),
        actions=np.concatenate(act),
        rewards=np.concatenate(rew),
        terminals=np.concatenate(term),
        timeouts=np.concatenate(tout),
        action_space=d3rlpy.constants.ActionSpace.CONTINUOUS,
    )


# --------------------------------------------------------------------------------------------
# algorithms


def make_algo(name: str, steps: int):
    import d3rlpy

    if name == "iql":
        # d3rlpy's D4RL locomotion setting for IQL: rewards scaled by 1000 / (max - min return),
        # expectile 0.7, inverse temperature 3, weights clipped at 100, cosine-annealed actor lr.
        config = d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps)
            ),
            batch_size=256,
            expectile=0.7,
            weight_temp=3.0,
            max_weight=100.0,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
        )
    elif name == "td3bc":
        config = d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            batch_size=256,
            target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5,
            alpha=2.5,
            update_actor_interval=2,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        )
    else:
        raise ValueError(f"unknown algo {name!r}")
    return config.create(device="cpu:0")


# --------------------------------------------------------------------------------------------
# evaluation


def evaluate(algo, env_id: str, episodes: int) -> list[float]:
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + i)
        total, done = 0.0, False
        while not done:
            action = algo.predict(np.asarray(obs, dtype=np.float32)[None])[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def versions() -> dict:
    import d3rlpy
    import gymnasium
    import mujoco
    import torch

    out = {
        "d3rlpy": d3rlpy.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    try:
        import minari

        out["minari"] = minari.__version__
    except Exception:
        pass
    return out


def run(args) -> dict:
    import d3rlpy
    import torch

    torch.set_num_threads(1)
    spec = DATASETS[args.dataset]
    d3rlpy.seed(args.seed)

    t0 = time.perf_counter()
    episodes, refs, how = [], None, None
    for dataset_id in spec["ids"]:
        eps, meta, how = load_episodes(dataset_id)
        episodes += eps
        refs = refs or (float(meta["ref_min_score"]), float(meta["ref_max_score"]))
    dataset = build_mdp_dataset(episodes)
    load_s = time.perf_counter() - t0
    n_transitions = int(sum(len(ep["actions"]) for ep in episodes))
    print(
        f"{args.dataset}: {len(episodes)} episodes, {n_transitions} steps "
        f"(loaded with {how} in {load_s:.1f}s); training {args.algo} for {args.steps} steps"
    )

    algo = make_algo(args.algo, args.steps)
    t0 = time.perf_counter()
    algo.fit(
        dataset,
        n_steps=args.steps,
        n_steps_per_epoch=args.steps,
        experiment_name=f"{args.dataset}-{args.algo}-s{args.seed}",
        with_timestamp=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
        save_interval=10**9,
        evaluators=None,
    )
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    returns = evaluate(algo, spec["env"], args.episodes)
    eval_s = time.perf_counter() - t0

    ref_min, ref_max = refs
    scores = [100.0 * (r - ref_min) / (ref_max - ref_min) for r in returns]
    return {
        "dataset": args.dataset,
        "dataset_ids": spec["ids"],
        "env": spec["env"],
        "algo": args.algo,
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": 256,
        "episodes": args.episodes,
        "eval_seeds": [EVAL_SEED_BASE + i for i in range(args.episodes)],
        "n_dataset_episodes": len(episodes),
        "n_dataset_steps": n_transitions,
        "ref_min_score": ref_min,
        "ref_max_score": ref_max,
        "score_mean": float(np.mean(scores)),
        "score_std": float(np.std(scores)),
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "returns": returns,
        "scores": scores,
        "train_wall_s": train_s,
        "steps_per_s": args.steps / train_s,
        "eval_wall_s": eval_s,
        "load_wall_s": load_s,
        "loader": how,
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }


# --------------------------------------------------------------------------------------------
# reporting


def row(res: dict) -> str:
    return (
        f"| {res['dataset']} | {res['algo']} | {res['seed']} | {res['steps']} | "
        f"{res['score_mean']:.1f} ± {res['score_std']:.1f} | {res['return_mean']:.0f} | "
        f"{res['train_wall_s'] / 60:.1f} | {res['steps_per_s']:.0f} | {res['eval_wall_s']:.0f} |"
    )


ROW_HEADER = (
    "| dataset | algo | seed | steps | score (mean ± std over episodes) | return | "
    "train min | steps/s | eval s |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def summarize(out: Path) -> str:
    results = []
    for path in sorted(glob.glob(str(out / "*.json"))):
        try:
            res = json.loads(Path(path).read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(res, dict) and "score_mean" in res:
            results.append(res)
    groups: dict[tuple, list[dict]] = {}
    for res in results:
        groups.setdefault((res["dataset"], res["algo"], res["steps"]), []).append(res)
    order = {name: i for i, name in enumerate(DATASETS)}
    lines = [
        "| dataset | algo | steps | seeds | score (mean ± std over seeds) | per-seed scores | "
        "train min (mean) | steps/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in sorted(groups, key=lambda k: (order.get(k[0], 99), k[1], k[2])):
        rs = sorted(groups[key], key=lambda r: r["seed"])
        means = np.array([r["score_mean"] for r in rs])
        per_seed = ", ".join(f"s{r['seed']}: {r['score_mean']:.1f}" for r in rs)
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | {means.mean():.1f} ± {means.std():.1f} | "
            f"{per_seed} | {np.mean([r['train_wall_s'] for r in rs]) / 60:.1f} | "
            f"{np.mean([r['steps_per_s'] for r in rs]):.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS))
    p.add_argument("--algo", choices=ALGOS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/d3rlpy"))
    p.add_argument("--summarize", action="store_true", help="print a table of all JSONs in --out")
    args = p.parse_args(argv)

    if args.summarize:
        print(summarize(args.out))
        return 0
    if not args.dataset or not args.algo:
        p.error("--dataset and --algo are required (or --summarize)")

    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.dataset}-{args.algo}-s{args.seed}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(path)
    print(ROW_HEADER)
    print(row(res))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
