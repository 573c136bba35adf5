"""Side-by-side table: EDA (ours, defaults) against d3rlpy IQL and TD3+BC, per dataset.

Reads the JSON written by ``benchmarks/pipeline.py`` (``benchmarks/results/pipeline/*.json`` and
the older ``benchmarks/results/pipeline.json``), by ``benchmarks/gpu_budget.py``
(``benchmarks/results/pipeline_gpu/*.json``, the "EDA, GPU budget" columns) and by ``benchmarks/d3rlpy_baseline.py``
(``benchmarks/results/d3rlpy/*.json``); trains nothing.

    python benchmarks/compare.py --json benchmarks/results/compare.json --markdown BENCHMARKS.md

With ``--markdown FILE`` the tables also replace whatever stands between the lines
``<!-- compare:begin -->`` and ``<!-- compare:end -->`` in FILE, and the few-step table (from
``benchmarks/results/few_step_*.json``, written by ``benchmarks/few_step.py``) what stands between
``<!-- few-step:begin -->`` and ``<!-- few-step:end -->``, and the table of every training run (one
line per dataset, method and seed) what stands between ``<!-- runs:begin -->`` and ``<!-- runs:end -->``.

A score cell with one training seed is that run's mean +- std over its 20 evaluation episodes;
with several seeds it is the mean +- std over seeds of the per-seed means, then each seed's score.
Wall time: EDA = max(behavior, critic) + alignment training seconds (the first two run side by
side), d3rlpy = its training loop; both from the runs' own logs.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

DATASET_ORDER = ["hopper-medium-replay", "hopper-medium", "hopper-medium-expert", "walker2d-medium", "walker2d-medium-expert"]
GPU = "EDA, GPU budget"
METHODS = ["EDA (ours, default)", "EDA, 1 candidate", "behavior model (EDA stage 1)", GPU, f"{GPU}, 1 candidate",
           "d3rlpy IQL", "d3rlpy TD3+BC"]
D3RLPY_NAMES = {"iql": "d3rlpy IQL", "td3bc": "d3rlpy TD3+BC"}
# Methods that are a training run of their own (the other EDA rows come out of the same run as the default).
TRAINED_METHODS = [m for m in METHODS if m.startswith(("EDA (", "d3rlpy")) or m == GPU]
# benchmarks/gpu_budget.py's reports: the same layout, other method names; its behavior model is not tabled.
GPU_NAMES = {"EDA (ours, default)": GPU, "EDA, 1 candidate": f"{GPU}, 1 candidate"}


def _eda_rows(entry: dict) -> dict[str, dict]:
    """The two EDA rows of one pipeline report entry (labels changed once; accept both)."""
    out = {}
    for label, row in entry["policies"].items():
        if label.startswith("EDA (best of 4"):
            out["EDA (ours, default)"] = row
        elif label.startswith("EDA (1 candidate") or label.startswith("EDA (default, 1 candidate"):
            out["EDA, 1 candidate"] = row
        elif label.startswith("behavior model only"):
            out["behavior model (EDA stage 1)"] = row
    return out


def _eda_wall_s(timings: dict) -> float | None:
    """Training wall time of one pipeline run: behavior and critic run side by side, then alignment."""
    keys = ("behavior_train_s", "critic_train_s", "alignment_train_s")
    if not all(k in timings for k in keys):
        return None
    return max(timings["behavior_train_s"], timings["critic_train_s"]) + timings["alignment_train_s"]


def collect(results: Path) -> dict[tuple[str, str], dict[int, dict]]:
    """(dataset, method) -> seed -> {"score": per-seed mean, "std": over episodes, "wall_s": ...}."""
    table: dict[tuple[str, str], dict[int, dict]] = {}
    pipeline_files = [results / "pipeline.json", *sorted((results / "pipeline").glob("*.json"))]
    same_names = {m: m for m in METHODS}
    sources = [(path, same_names) for path in pipeline_files]  # later files win for the same (dataset, seed)
    sources += [(path, GPU_NAMES) for path in sorted((results / "pipeline_gpu").glob("*.json"))]
    for path, names in sources:
        if not path.exists():
            continue
        for entry in json.loads(path.read_text()):
            for method, row in _eda_rows(entry).items():
                if method in names:
                    table.setdefault((entry["dataset"], names[method]), {})[entry["seed"]] = {
                        "score": row["score_mean"], "std": row["score_std"], "wall_s": _eda_wall_s(entry["timings_s"])}
    for path in sorted((results / "d3rlpy").glob("*.json")):
        res = json.loads(path.read_text())
        if not isinstance(res, dict) or "score_mean" not in res:
            continue
        method = D3RLPY_NAMES[res["algo"]]
        table.setdefault((res["dataset"], method), {})[res["seed"]] = {
            "score": res["score_mean"], "std": res["score_std"], "wall_s": res["train_wall_s"]}
    return table


def score_cell(seeds: dict[int, dict] | None) -> str:
    """One seed: mean +- std over its episodes. Several: mean +- std over seeds, and each seed's score."""
    if not seeds:
        return "not run"
    if len(seeds) == 1:
        only = next(iter(seeds.values()))
        return f"{only['score']:.1f} +- {only['std']:.1f} (1 seed)"
    scores = np.array([seeds[s]["score"] for s in sorted(seeds)])
    per_seed = ", ".join(f"{seeds[s]['score']:.1f}" for s in sorted(seeds))
    return f"{scores.mean():.1f} +- {scores.std():.1f} ({len(scores)} seeds: {per_seed})"


def wall_cell(seeds: dict[int, dict] | None) -> str:
    walls = [v["wall_s"] for v in (seeds or {}).values() if v["wall_s"] is not None]
    return f"{np.mean(walls) / 60:.0f}" if walls else "-"


def format_tables(table: dict[tuple[str, str], dict[int, dict]]) -> str:
    """The score table and the wall-time table, as Markdown."""
    lines = ["Normalised score:", "", "| dataset | " + " | ".join(METHODS) + " |", "| --- |" + " --- |" * len(METHODS)]
    for dataset in DATASET_ORDER:
        lines.append(f"| {dataset} | " + " | ".join(score_cell(table.get((dataset, m))) for m in METHODS) + " |")
    trained = TRAINED_METHODS
    lines += ["", "Training wall time of one run, minutes (mean over seeds):", "",
              "| dataset | " + " | ".join(trained) + " |", "| --- |" + " --- |" * len(trained)]
    for dataset in DATASET_ORDER:
        lines.append(f"| {dataset} | " + " | ".join(wall_cell(table.get((dataset, m))) for m in trained) + " |")
    return "\n".join(lines) + "\n"


def format_runs(table: dict[tuple[str, str], dict[int, dict]]) -> str:
    """Every training run on its own line: score mean +- std over its evaluation episodes, wall time."""
    lines = ["| dataset | method | seed | score (mean +- std over episodes) | training wall min |",
             "| --- | --- | --- | --- | --- |"]
    for dataset in DATASET_ORDER:
        for method in METHODS:
            for seed, run in sorted(table.get((dataset, method), {}).items()):
                wall = "-" if run["wall_s"] is None or method not in TRAINED_METHODS else f"{run['wall_s'] / 60:.0f}"
                lines.append(f"| {dataset} | {method} | {seed} | {run['score']:.1f} +- {run['std']:.1f} | {wall} |")
    return "\n".join(lines) + "\n"


def format_few_step(results: Path) -> str:
    """Score of every shipped policy per number of network evaluations (NFE), with and without best-of-N."""
    entries = [e for path in sorted(results.glob("few_step_*.json")) for e in json.loads(path.read_text())]
    nfes = sorted({row["nfe"] for e in entries for row in e["rows"]})
    lines = ["| policy | candidates | " + " | ".join(f"{n} NFE" for n in nfes) + " |",
             "| --- | --- |" + " --- |" * len(nfes)]
    for entry in entries:
        name = Path(entry["policy"]).name
        for candidates in sorted({row["num_candidates"] for row in entry["rows"]}):
            rows = {row["nfe"]: row for row in entry["rows"] if row["num_candidates"] == candidates}
            cells = []
            for n in nfes:
                row = rows.get(n)
                if row is None:
                    cells.append("-")
                    continue
                text = f"{row['score_mean']:.1f} +- {row['score_std']:.1f}"
                if n == entry["default_nfe"]:
                    text = f"**{text} ({100 * row['fraction_of_max_nfe']:.0f}%)**"
                cells.append(text)
            label = "1" if candidates == 1 else f"best of {candidates} by Q"
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_between_markers(path: Path, text: str, name: str = "compare") -> None:
    """Put ``text`` between the <name>:begin / <name>:end comment lines of a Markdown file."""
    source = path.read_text()
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(source):
        raise SystemExit(f"{path} has no '<!-- {name}:begin -->' ... '<!-- {name}:end -->' block to fill")
    path.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), source))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--json", type=Path, default=None, help="also write the collected numbers here")
    parser.add_argument("--markdown", type=Path, default=None, help="also fill the compare block of this file")
    args = parser.parse_args()
    table = collect(args.results)
    text = format_tables(table)
    print(text, end="")
    if args.markdown:
        replace_between_markers(args.markdown, text)
        replace_between_markers(args.markdown, format_few_step(args.results), "few-step")
        replace_between_markers(args.markdown, format_runs(table), "runs")
        print(f"\nfilled the compare, few-step and runs blocks of {args.markdown}")
    if args.json:
        out = {f"{d}/{m}": {str(s): v for s, v in seeds.items()} for (d, m), seeds in table.items()}
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
