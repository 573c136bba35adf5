"""Score of a trained policy against the number of network evaluations, best-of-N on and off.

    python benchmarks/few_step.py checkpoints/hopper-medium-replay --json benchmarks/results/few_step_hopper-medium-replay.json

Each cell: the D4RL normalised score over the same evaluation episodes (reset seeds
``seed .. seed + episodes - 1``), mean +- std, and the fraction of the 15-evaluation score.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from eda_policy import EDAPolicy, evaluate_policy

NFES = (1, 2, 3, 5, 10, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policies", nargs="+", help="checkpoint folders or Hub ids")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--nfe", type=int, nargs="+", default=list(NFES))
    parser.add_argument("--candidates", type=int, default=4, help="N for best-of-N (when the checkpoint has a critic)")
    parser.add_argument("--json", default="benchmarks/results/few_step.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    report = []
    for source in args.policies:
        policy = EDAPolicy.from_pretrained(source)
        modes = [1] + ([args.candidates] if policy.critic is not None else [])
        rows = []
        for candidates in modes:
            for nfe in args.nfe:
                began = time.perf_counter()
                result = evaluate_policy(policy, num_episodes=args.episodes, seed=args.seed,
                                         num_steps=nfe, num_candidates=candidates)
                rows.append({"nfe": nfe, "num_candidates": candidates, "score_mean": result.mean_normalized,
                             "score_std": result.std_normalized, "return_mean": result.mean_return,
                             "wall_s": time.perf_counter() - began})
                print(f"{source} nfe={nfe:2d} N={candidates}: {result.summary()}", flush=True)
        for row in rows:
            ref = next(r for r in rows if r["nfe"] == max(args.nfe) and r["num_candidates"] == row["num_candidates"])
            row["fraction_of_max_nfe"] = row["score_mean"] / ref["score_mean"] if ref["score_mean"] else None
        report.append({"policy": source, "default_nfe": policy.config.num_steps, "episodes": args.episodes,
                       "seed": args.seed, "rows": rows})
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))

    print(f"\n| policy | best-of-N | " + " | ".join(f"{n} NFE" for n in args.nfe) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in args.nfe) + " |")
    for entry in report:
        for candidates in sorted({r["num_candidates"] for r in entry["rows"]}):
            cells = [r for r in entry["rows"] if r["num_candidates"] == candidates]
            text = " | ".join(f"{r['score_mean']:.1f} +- {r['score_std']:.1f} ({100 * r['fraction_of_max_nfe']:.0f}%)" for r in cells)
            print(f"| {Path(entry['policy']).name} | {candidates} | {text} |")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
