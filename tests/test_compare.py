"""benchmarks/compare.py: collecting EDA and d3rlpy reports into the side-by-side table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark_script


@pytest.fixture(scope="module")
def compare():
    return load_benchmark_script("compare")


def _pipeline_entry(dataset: str, seed: int, score: float) -> dict:
    return {"dataset": dataset, "seed": seed,
            "timings_s": {"behavior_train_s": 600.0, "critic_train_s": 900.0, "alignment_train_s": 300.0},
            "policies": {"EDA (1 candidate)": {"score_mean": score - 10, "score_std": 5.0},
                         "EDA (best of 4 by Q, the default)": {"score_mean": score, "score_std": 2.0},
                         "behavior model only (stage 1)": {"score_mean": 30.0, "score_std": 1.0}}}


def test_seeds_are_averaged_and_missing_runs_are_said(tmp_path: Path, compare) -> None:
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "d3rlpy").mkdir()
    for seed, score in [(0, 80.0), (1, 70.0)]:
        path = tmp_path / "pipeline" / f"hopper-medium-replay-s{seed}.json"
        path.write_text(json.dumps([_pipeline_entry("hopper-medium-replay", seed, score)]))
    (tmp_path / "d3rlpy" / "hopper-medium-replay-iql-s0.json").write_text(json.dumps(
        {"dataset": "hopper-medium-replay", "algo": "iql", "seed": 0, "score_mean": 60.0, "score_std": 3.0,
         "train_wall_s": 1200.0}))
    (tmp_path / "d3rlpy" / "run.log").write_text("not json")
    (tmp_path / "pipeline_gpu").mkdir()
    (tmp_path / "pipeline_gpu" / "hopper-medium-replay-s0.json").write_text(
        json.dumps([_pipeline_entry("hopper-medium-replay", 0, 90.0)]))

    table = compare.collect(tmp_path)
    text = compare.format_tables(table)
    row = next(line for line in text.splitlines() if line.startswith("| hopper-medium-replay |") and "seeds" in line)
    assert "75.0 +- 5.0 (2 seeds: 80.0, 70.0)" in row  # EDA default over two seeds
    assert "60.0 +- 3.0 (1 seed)" in row  # d3rlpy IQL, one seed: std over episodes
    assert row.rstrip(" |").endswith("not run")  # no TD3+BC report
    walls = [line for line in text.splitlines() if line.startswith("| hopper-medium-replay |")][-1]
    assert walls.split("|")[2].strip() == "20"  # max(600, 900) + 300 s = 20 min
    assert walls.split("|")[3].strip() == "20"  # the GPU-budget run: same timings in its report
    assert walls.split("|")[4].strip() == "20"  # d3rlpy IQL, 1200 s
    cells = row.split("|")
    assert cells[compare.METHODS.index(compare.GPU) + 2].strip() == "90.0 +- 2.0 (1 seed)"


def test_markdown_block_is_replaced_and_a_missing_block_is_an_error(tmp_path: Path, compare) -> None:
    doc = tmp_path / "B.md"
    doc.write_text("intro\n<!-- compare:begin -->\nold table\n<!-- compare:end -->\nafter\n")
    compare.replace_between_markers(doc, "new table\n")
    assert doc.read_text() == "intro\n<!-- compare:begin -->\nnew table\n<!-- compare:end -->\nafter\n"
    (tmp_path / "plain.md").write_text("no markers here\n")
    with pytest.raises(SystemExit, match="compare:begin"):
        compare.replace_between_markers(tmp_path / "plain.md", "x")


def test_few_step_table_marks_the_default_and_its_share_of_15(tmp_path: Path, compare) -> None:
    rows = [{"nfe": n, "num_candidates": c, "score_mean": float(10 * n + c), "score_std": 1.0,
             "fraction_of_max_nfe": (10 * n + c) / (150 + c)} for c in (1, 4) for n in (1, 3, 15)]
    (tmp_path / "few_step_x.json").write_text(json.dumps([{"policy": "checkpoints/x", "default_nfe": 3, "rows": rows}]))
    text = compare.format_few_step(tmp_path)
    lines = text.splitlines()
    assert lines[0] == "| policy | candidates | 1 NFE | 3 NFE | 15 NFE |"
    assert lines[2] == "| x | 1 | 11.0 +- 1.0 | **31.0 +- 1.0 (21%)** | 151.0 +- 1.0 |"
    assert lines[3].startswith("| x | best of 4 by Q | 14.0 +- 1.0 | **34.0 +- 1.0 (22%)**")


def test_every_run_gets_its_own_line_with_its_episode_spread(tmp_path: Path, compare) -> None:
    (tmp_path / "pipeline").mkdir()
    for seed, score in [(0, 80.0), (1, 70.0)]:
        path = tmp_path / "pipeline" / f"hopper-medium-replay-s{seed}.json"
        path.write_text(json.dumps([_pipeline_entry("hopper-medium-replay", seed, score)]))
    lines = compare.format_runs(compare.collect(tmp_path)).splitlines()
    assert "| hopper-medium-replay | EDA (ours, default) | 0 | 80.0 +- 2.0 | 20 |" in lines
    assert "| hopper-medium-replay | EDA (ours, default) | 1 | 70.0 +- 2.0 | 20 |" in lines
    # the behavior row comes out of the same run: its wall time is not counted twice
    assert "| hopper-medium-replay | behavior model (EDA stage 1) | 1 | 30.0 +- 1.0 | - |" in lines
    assert len(lines) == 2 + 2 * 3
