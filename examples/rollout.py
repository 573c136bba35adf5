"""Run a pretrained EDA policy in Gymnasium: N episodes, return and normalised score, and a GIF.

    python examples/rollout.py                          # the shipped hopper policy
    python examples/rollout.py --task walker2d          # the shipped walker2d policy
    python examples/rollout.py --task hopper-medium     # any folder in checkpoints/
    python examples/rollout.py --policy runs/hmr/policy # any checkpoint folder or Hub repo id
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before MuJoCo loads

import torch

from eda_policy import EDAPolicy, evaluate_policy, record_video

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_POLICIES = {
    "hopper": CHECKPOINTS / "hopper-medium-replay",
    "walker2d": CHECKPOINTS / "walker2d-medium",
}
# Every shipped folder can also be named directly, e.g. --task hopper-medium-expert.
SHIPPED = {path.name: path for path in sorted(CHECKPOINTS.iterdir()) if (path / "config.json").is_file()}
TASKS = {**SHIPPED, **DEFAULT_POLICIES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="hopper",
                        help="which shipped policy to run: hopper, walker2d, or a folder name in checkpoints/")
    parser.add_argument("--policy", default=None, help="checkpoint folder or Hub repo id (overrides --task)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--num-steps", type=int, default=None, help="network evaluations per action (default: the checkpoint's)")
    parser.add_argument("--video", default="rollout.gif", help="where to write a GIF of one episode ('' to skip)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    source = args.policy or str(TASKS[args.task])
    policy = EDAPolicy.from_pretrained(source)
    print(f"loaded {source}: {policy.config.env_id}, trained on {policy.config.dataset_id}, "
          f"{policy.config.num_steps} network evaluations per action")
    result = evaluate_policy(policy, num_episodes=args.episodes, seed=args.seed, num_steps=args.num_steps)
    for i, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        score = f", normalised {result.normalized_scores[i]:.1f}" if result.normalized_scores else ""
        print(f"episode {i:2d}: return {ret:8.1f} over {length:4d} steps{score}")
    print(result.summary())
    if args.video:
        path, ret = record_video(policy, args.video, seed=args.seed)
        print(f"wrote {path} (one episode, return {ret:.1f})")


if __name__ == "__main__":
    main()
