"""``eda-train``: behavior, critic, align, all, eval, finetune and push, from the command line.

    eda-train all --dataset eda/hopper/medium-replay-v0 --output runs/hmr
    eda-train eval runs/hmr --episodes 20
    eda-train push runs/hmr --repo-id my-org/eda-hopper-medium-replay
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import AlignmentConfig, BehaviorConfig, CriticConfig, RunConfig

# (flag, config section, field) for every stage hyperparameter the command line can override.
OVERRIDES: list[tuple[str, str, str]] = [
    ("--behavior-steps", "behavior", "steps"),
    ("--behavior-batch-size", "behavior", "batch_size"),
    ("--behavior-lr", "behavior", "lr"),
    ("--hidden-dim", "behavior", "hidden_dim"),
    ("--num-blocks", "behavior", "num_blocks"),
    ("--ff-mult", "behavior", "ff_mult"),
    ("--dropout", "behavior", "dropout"),
    ("--critic-steps", "critic", "steps"),
    ("--critic-batch-size", "critic", "batch_size"),
    ("--critic-lr", "critic", "lr"),
    ("--gamma", "critic", "gamma"),
    ("--tau", "critic", "tau"),
    ("--expectile", "critic", "expectile"),
    ("--align-steps", "alignment", "steps"),
    ("--align-batch-states", "alignment", "batch_states"),
    ("--align-lr", "alignment", "lr"),
    ("--num-actions", "alignment", "num_actions"),
    ("--align-states", "alignment", "num_states"),
    ("--sample-steps", "alignment", "sample_steps"),
    ("--alpha", "alignment", "alpha"),
    ("--beta", "alignment", "beta"),
    ("--target", "alignment", "target"),
    ("--label-fraction", "alignment", "label_fraction"),
    ("--policy-candidates", "alignment", "policy_candidates"),
]
SECTIONS = {"behavior": BehaviorConfig, "critic": CriticConfig, "alignment": AlignmentConfig}


def _field_type(section: str, name: str) -> type:
    default = getattr(SECTIONS[section](), name)
    return type(default)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", action="append", required=True, dest="datasets",
                        help="Minari dataset id; repeat to train on several together (medium + expert = medium-expert)")
    parser.add_argument("--output", required=True, help="run folder (re-running the same command resumes it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    parser.add_argument("--preset", default=None, help="paper task preset for beta, e.g. hopper-medium (default: from the dataset ids)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--download", action="store_true", help="download missing datasets from Minari's servers")
    parser.add_argument("--no-progress", action="store_true")
    for flag, section, name in OVERRIDES:
        kind = _field_type(section, name)
        parser.add_argument(flag, type=kind, default=None, help=f"{section}.{name} (default {getattr(SECTIONS[section](), name)})")


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    run = RunConfig(
        dataset_ids=list(args.datasets), output=args.output, seed=args.seed, device=args.device,
        threads=args.threads, preset=args.preset, eval_episodes=args.eval_episodes, eval_every=args.eval_every,
        log_every=args.log_every, checkpoint_every=args.checkpoint_every, video=not args.no_video, download=args.download,
    )
    run.apply_preset()
    for flag, section, name in OVERRIDES:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            setattr(getattr(run, section), name, value)
    run.alignment = dataclasses.replace(run.alignment)  # re-validate after overrides
    return run


def _stage(args: argparse.Namespace) -> int:
    from .pipeline import load_run_data, run_all, save_run_config
    from .stages import BEHAVIOR_DIR, CRITIC_DIR, load_critic, train_alignment, train_behavior, train_critic

    run = run_config_from_args(args)
    torch.set_num_threads(run.threads)
    progress = not args.no_progress
    if args.command == "all":
        _, results = run_all(run, progress=progress)
        print(json.dumps({k: v for k, v in results.items() if k != "evaluation"}, indent=2))
        evaluation = results.get("evaluation")
        if evaluation:
            print(f"final: return {evaluation['mean_return']:.1f}, normalised score {evaluation['mean_normalized']}")
        print(f"policy written to {Path(run.output) / 'policy'}")
        return 0
    save_run_config(run)
    data = load_run_data(run)
    if args.command == "behavior":
        train_behavior(run, data, progress=progress)
    elif args.command == "critic":
        train_critic(run, data, progress=progress)
    elif args.command == "align":
        from eda_policy import EDAPolicy

        from .publish import export_policy

        out = Path(run.output)
        reference = EDAPolicy.from_pretrained(out / BEHAVIOR_DIR, device=run.device)
        critic = load_critic(out / CRITIC_DIR, data.obs_dim, data.act_dim, run.device)
        policy = train_alignment(run, data, reference, critic, progress=progress)
        export_policy(policy, out / "policy", evaluation=None, repo_id=f"eda-policy/{out.name}",
                      training_config=run.to_dict(), video=False)
    return 0


def _policy_folder(path: str) -> str:
    candidate = Path(path) / "policy"
    return str(candidate) if (candidate / "config.json").exists() else path


def _eval(args: argparse.Namespace) -> int:
    from eda_policy import EDAPolicy, evaluate_policy

    torch.set_num_threads(args.threads)
    policy = EDAPolicy.from_pretrained(_policy_folder(args.policy), device=args.device)
    result = evaluate_policy(policy, args.env_id, args.episodes, seed=args.seed,
                             num_steps=args.num_steps, num_candidates=args.num_candidates,
                             deterministic=args.deterministic)
    print(result.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
    return 0


def _push(args: argparse.Namespace) -> int:
    from .publish import push_folder

    print(push_folder(Path(_policy_folder(args.run_dir)), args.repo_id, private=args.private or None))
    return 0


def _export(args: argparse.Namespace) -> int:
    from eda_policy import EDAPolicy, evaluate_policy

    from .publish import export_policy

    torch.set_num_threads(args.threads)
    source = Path(_policy_folder(args.run_dir))
    overrides = {} if args.num_candidates is None else {"num_candidates": args.num_candidates}
    policy = EDAPolicy.from_pretrained(source, **overrides)
    evaluation = evaluate_policy(policy, num_episodes=args.episodes, seed=args.seed)
    print(evaluation.summary())
    previous = json.loads((source / "results.json").read_text()) if (source / "results.json").exists() else {}
    # A run folder, or a stage folder inside one (e.g. <run>/behavior): the run's settings sit beside it.
    configs = [p / "run_config.json" for p in (Path(args.run_dir), Path(args.run_dir).parent) if (p / "run_config.json").exists()]
    training_config = json.loads(configs[0].read_text()) if configs else None
    extra = {k: v for k, v in previous.items() if k not in ("evaluation", "video")}
    export_policy(policy, Path(args.to), evaluation=evaluation, repo_id=args.repo_id, training_config=training_config,
                  extra_results=extra, video=args.video, video_seed=args.seed, notes=args.notes)
    if args.behavior and (Path(args.run_dir) / "behavior").is_dir():
        behavior = EDAPolicy.from_pretrained(Path(args.run_dir) / "behavior")
        export_policy(behavior, Path(str(args.to) + "-behavior"), evaluation=None, repo_id=args.repo_id + "-behavior",
                      training_config=training_config, video=False)
    print(f"exported to {args.to}")
    return 0


def _load_q_function(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"--q-function must look like 'package.module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def _finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune

    torch.set_num_threads(args.threads)
    table = np.load(args.labels, allow_pickle=False)
    overrides = {name: getattr(args, name) for name in ("steps", "beta", "alpha", "lr", "num_actions", "batch_states") if getattr(args, name) is not None}
    if args.q_function:
        finetune(args.policy, output=args.output, states=table["states"], q_function=_load_q_function(args.q_function),
                 seed=args.seed, progress=not args.no_progress, **overrides)
    else:
        missing = [k for k in ("states", "actions", "q_values") if k not in table.files]
        if missing:
            raise SystemExit(f"{args.labels} lacks arrays {missing}; it has {table.files}")
        finetune(args.policy, output=args.output, states=table["states"], actions=table["actions"],
                 q_values=table["q_values"], seed=args.seed, progress=not args.no_progress, **overrides)
    print(f"aligned policy written to {Path(args.output) / 'policy'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eda-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [("behavior", "stage 1: behavior pretraining"), ("critic", "stage 2: IQL critic"),
                       ("align", "stage 3: alignment (needs behavior and critic in --output)"),
                       ("all", "the three stages, evaluation and export")]:
        add_run_arguments(sub.add_parser(name, help=text))
    ev = sub.add_parser("eval", help="evaluate a policy folder, run folder or Hub id")
    ev.add_argument("policy")
    ev.add_argument("--env-id", default=None)
    ev.add_argument("--episodes", type=int, default=20)
    ev.add_argument("--seed", type=int, default=10_000)
    ev.add_argument("--num-steps", type=int, default=None)
    ev.add_argument("--num-candidates", type=int, default=None)
    ev.add_argument("--deterministic", action="store_true")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", default=None)
    push = sub.add_parser("push", help="publish a run's policy folder to the Hugging Face Hub")
    push.add_argument("run_dir")
    push.add_argument("--repo-id", required=True)
    push.add_argument("--private", action="store_true")
    ex = sub.add_parser("export", help="re-evaluate a run's policy and write a Hub-layout folder (e.g. under checkpoints/)")
    ex.add_argument("run_dir")
    ex.add_argument("--to", required=True, help="destination folder")
    ex.add_argument("--repo-id", required=True, help="the Hub id the folder is meant for (goes into the model card)")
    ex.add_argument("--episodes", type=int, default=20)
    ex.add_argument("--seed", type=int, default=10_000)
    ex.add_argument("--threads", type=int, default=1)
    ex.add_argument("--video", action="store_true")
    ex.add_argument("--num-candidates", type=int, default=None, help="best-of-N default written into the exported config")
    ex.add_argument("--behavior", action="store_true", help="also export the stage-1 behavior model to <to>-behavior")
    ex.add_argument("--notes", default=None, help="a paragraph for the model card, under the evaluation (e.g. known limits)")
    ft = sub.add_parser("finetune", help="align a pretrained policy to your own Q-labels")
    ft.add_argument("--policy", required=True, help="policy folder or Hub id")
    ft.add_argument("--labels", required=True, help=".npz with states (N,S) and either actions (N,K,A) + q_values (N,K), or use --q-function")
    ft.add_argument("--q-function", default=None, help="'module:callable' Q(obs, action) -> (M,) used to label K samples per state")
    ft.add_argument("--output", required=True)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--threads", type=int, default=1)
    ft.add_argument("--no-progress", action="store_true")
    for name, kind in [("steps", int), ("beta", float), ("alpha", float), ("lr", float), ("num_actions", int), ("batch_states", int)]:
        ft.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"eval": _eval, "push": _push, "finetune": _finetune, "export": _export}
    try:
        return handlers.get(args.command, _stage)(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"eda-train {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
