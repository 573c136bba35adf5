"""benchmarks/gpu_budget.py: the compact dataset transport is exact, and steps grow to fit a deadline."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.conftest import load_benchmark_script
from tests.minari_fixtures import make_tiny_hopper_dataset
from training.data import load_minari


@pytest.fixture(scope="module")
def gpu_budget():
    return load_benchmark_script("gpu_budget")


def test_pack_then_load_gives_the_same_dataset(gpu_budget, tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    dataset_id = make_tiny_hopper_dataset(root)
    original = load_minari(dataset_id)
    out = tmp_path / "packed"
    out.mkdir()
    gpu_budget.pack_dataset(original, out / gpu_budget.packed_name(dataset_id))
    (out / "datasets.json").write_text(json.dumps({"tiny": [dataset_id]}))
    restored = gpu_budget.load_packed(out, "tiny")
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "episode_returns",
                 "action_low", "action_high", "episode_ends"):
        assert np.array_equal(getattr(restored, name), getattr(original, name)), name
    assert (restored.env_id, restored.dataset_ids, restored.ref_min_score, restored.ref_max_score) == (
        original.env_id, original.dataset_ids, original.ref_min_score, original.ref_max_score)
    with pytest.raises(SystemExit, match="was not packed"):
        gpu_budget.load_packed(out, "other")


def test_grow_to_deadline_extends_by_measured_rate_and_stops_at_cap(gpu_budget):
    targets: list[int] = []
    done = {"steps": 0}

    def train() -> None:  # 1000 steps per 0.05 s
        time.sleep((targets[-1] - done["steps"]) / 1000 * 0.05)
        done["steps"] = targets[-1]

    final = gpu_budget.grow_to_deadline(train, targets.append, first=1000, cap=6000, deadline=time.time() + 60)
    assert final == 6000 and targets[0] == 1000 and targets == sorted(targets)
    targets.clear()
    done["steps"] = 0
    final = gpu_budget.grow_to_deadline(train, targets.append, first=1000, cap=10**9, deadline=time.time() + 0.5)
    assert final == targets[-1] and len(targets) == 1  # under 10 s left: no extension
