"""Align a pretrained behavior policy to your own Q-labels, and compare scores before and after.

Your Q can be any callable ``q(obs, action) -> (M,)`` on raw observations and env-unit actions
(an ``nn.Module`` works), or a table of states (N, S), candidate actions (N, K, A), Q-values (N, K).
Here "your" Q is the critic that ships inside the aligned hopper checkpoint, and the states are
a seeded fraction of the shared hopper medium-replay dataset:

    MINARI_DATASETS_PATH=../shared/datasets python examples/finetune_own_qlabels.py --fraction 0.01
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from eda_policy import EDAPolicy, evaluate_policy
from training.data import load_minari
from training.finetune import finetune

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--behavior", default=str(CHECKPOINTS / "hopper-medium-replay-behavior"), help="pretrained (stage 1) policy")
    parser.add_argument("--q-from", default=str(CHECKPOINTS / "hopper-medium-replay"), help="a checkpoint whose critic serves as your Q")
    parser.add_argument("--dataset", default="eda/hopper/medium-replay-v0")
    parser.add_argument("--fraction", type=float, default=0.1, help="fraction of the dataset's states you have labels for")
    parser.add_argument("--states", type=int, default=20_000, help="states drawn before the fraction is applied")
    parser.add_argument("--steps", type=int, default=4_000)
    parser.add_argument("--beta", type=float, default=0.2)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/finetune-own-qlabels")
    parser.add_argument("--json", default=None, help="write the before/after scores here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    behavior = EDAPolicy.from_pretrained(args.behavior)
    critic_holder = EDAPolicy.from_pretrained(args.q_from)
    if critic_holder.critic is None:
        raise SystemExit(f"{args.q_from} has no critic to use as a Q-function")

    @torch.no_grad()
    def my_q(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Your Q-function: raw observations and env-unit actions in, one value per pair out."""
        return critic_holder.critic.min_q(critic_holder.normalize_obs(obs), critic_holder.from_env_action(action))

    data = load_minari(args.dataset)
    rng = np.random.default_rng(args.seed)
    chosen = rng.permutation(len(data))[: args.states]
    labelled = chosen[: max(1, int(round(args.fraction * len(chosen))))]
    states = data.observations[labelled]
    print(f"{len(states)} labelled states ({args.fraction:.0%} of {len(chosen)})")

    before = evaluate_policy(behavior, num_episodes=args.episodes, seed=args.seed + 10_000)
    print("before:", before.summary())
    aligned = finetune(behavior, output=args.output, states=states, q_function=my_q, steps=args.steps,
                       beta=args.beta, seed=args.seed)
    after = evaluate_policy(aligned, num_episodes=args.episodes, seed=args.seed + 10_000)
    print("after: ", after.summary())
    if args.json:
        Path(args.json).write_text(json.dumps({"fraction": args.fraction, "labelled_states": len(states),
                                               "before": before.to_dict(), "after": after.to_dict()}, indent=2))


if __name__ == "__main__":
    main()
