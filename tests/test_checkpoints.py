"""Every shipped checkpoint loads strictly, matches its env, stays under 5 MB, and runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from eda_policy import EDAPolicy

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").exists())


def test_there_is_a_shipped_hopper_policy() -> None:
    assert (ROOT / "checkpoints" / "hopper-medium-replay" / "config.json").exists()


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_checkpoint_loads_and_acts(folder: Path) -> None:
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "results.json"} <= files
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 5 * 1024 * 1024
    policy = EDAPolicy.from_pretrained(folder)
    env = gym.make(policy.config.env_id)
    policy.check_env(env)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        action = policy.act(obs, seed=0)
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)
    env.close()
    results = json.loads((folder / "results.json").read_text())
    assert results["env_id"] == policy.config.env_id


def test_rollout_example_runs_on_the_shipped_policy(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "rollout.py"), "--episodes", "1", "--video", ""],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "normalised score" in proc.stdout
