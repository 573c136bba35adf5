"""training/ under torchrun: 2 CPU processes (gloo) stay in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minari_fixtures import make_tiny_hopper_dataset

HERE = Path(__file__).resolve().parent


def test_two_cpu_processes_stay_in_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    dataset_id = make_tiny_hopper_dataset(root, num_episodes=3, max_steps=30)
    out = tmp_path / "ddp"
    env = dict(os.environ, MINARI_DATASETS_PATH=str(root), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HERE / "ddp_worker.py"), dataset_id, str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in reports)
    assert all(r["policy_in_sync"] and r["critic_in_sync"] for r in reports)
    assert reports[0]["checksum"] == reports[1]["checksum"]
    # Only rank 0 writes the outputs, once.
    assert (out / "behavior" / "model.safetensors").is_file()
    assert (out / "critic" / "critic.safetensors").is_file()
