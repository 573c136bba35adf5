"""Checkpoint I/O: save_pretrained / from_pretrained from a folder and from a Hugging Face cache, strictly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_tiny_policy
from eda_policy import FORMAT_VERSION, CheckpointFormatError, EDAPolicy

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "acme-robotics/eda-hopper-tiny"
REVISION = "3f1c9a0b7d2e4f6a8b0c1d2e3f4a5b6c7d8e9f01"  # any 40-hex commit id


@pytest.fixture
def saved(tmp_path: Path) -> tuple[EDAPolicy, Path]:
    """A tiny policy with a critic and non-symmetric bounds, saved to a folder."""
    policy = make_tiny_policy(seed=5, has_critic=True, action_low=[0.0, -2.0, -1.0], action_high=[2.0, 1.0, 0.5])
    folder = tmp_path / "ckpt"
    policy.save_pretrained(folder)
    return policy, folder


def obs_rows(n: int = 6) -> np.ndarray:
    return np.random.default_rng(9).normal(size=(n, 11))


def fill_hf_cache(cache: Path, folder: Path, repo_id: str = REPO_ID, revision: str = REVISION) -> Path:
    """Lay a checkpoint out as huggingface_hub's cache does: refs/main -> snapshots/<revision>/files."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snapshot = repo_dir / "snapshots" / revision
    shutil.copytree(folder, snapshot)
    return snapshot


def rewrite_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def rewrite_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------- round trips


def test_folder_roundtrip_gives_identical_actions(saved):
    policy, folder = saved
    loaded = EDAPolicy.from_pretrained(folder)
    assert loaded.config == policy.config
    assert not loaded.training, "from_pretrained must return an eval-mode policy (no dropout)"
    obs = obs_rows()
    np.testing.assert_array_equal(loaded.act(obs, seed=11), policy.act(obs, seed=11))
    np.testing.assert_array_equal(loaded.act(obs[0], deterministic=True), policy.act(obs[0], deterministic=True))
    for name, tensor in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # The loaded policy works with a str path too.
    np.testing.assert_array_equal(EDAPolicy.from_pretrained(str(folder)).act(obs, seed=3), policy.act(obs, seed=3))


def test_folder_layout_is_safetensors_config_and_model_card(saved):
    policy, folder = saved
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors"], names
    pickles = [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}]
    assert not pickles
    card = (folder / "README.md").read_text()
    assert "eda-policy" in card and "2407.09024" in card

    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "eda-policy" and config["format_version"] == FORMAT_VERSION
    assert config["action_low"] == [0.0, -2.0, -1.0]

    tensors = load_file(str(folder / "model.safetensors"))
    for name in ("obs_mean", "obs_std", "action_low", "action_high"):
        assert name in tensors, name
        torch.testing.assert_close(tensors[name], getattr(policy, name))
    assert float(tensors["obs_std"].min()) >= 0.5  # the fixture's non-trivial statistics, not defaults
    assert any(name.startswith("critic.") for name in tensors)


def test_hub_repo_id_from_offline_cache_in_fresh_interpreter(saved, tmp_path):
    """HF_HUB_OFFLINE / HF_HUB_CACHE are read when huggingface_hub is imported: use a fresh process."""
    policy, folder = saved
    cache = tmp_path / "hf_home" / "hub"
    fill_hf_cache(cache, folder)
    obs = obs_rows()
    np.save(tmp_path / "obs.npy", obs)
    script = textwrap.dedent(
        f"""
        import json, numpy as np, torch
        torch.set_num_threads(1)
        from eda_policy import EDAPolicy
        obs = np.load({str(tmp_path / "obs.npy")!r})
        out = {{}}
        policy = EDAPolicy.from_pretrained({REPO_ID!r})
        out["actions"] = policy.act(obs, seed=11).tolist()
        out["pinned"] = EDAPolicy.from_pretrained({REPO_ID!r}, revision={REVISION!r}).act(obs, seed=11).tolist()
        out["num_steps"] = EDAPolicy.from_pretrained({REPO_ID!r}, num_steps=5).config.num_steps
        try:
            EDAPolicy.from_pretrained("acme-robotics/not-in-the-cache")
        except FileNotFoundError as err:
            out["missing"] = str(err)
        print("RESULT" + json.dumps(out))
        """
    )
    env = dict(os.environ)
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HF_ENDPOINT"):
        env.pop(key, None)
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(cache))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    expected = policy.act(obs, seed=11)
    np.testing.assert_array_equal(np.asarray(out["actions"], dtype=np.float32), expected)
    np.testing.assert_array_equal(np.asarray(out["pinned"], dtype=np.float32), expected)
    assert out["num_steps"] == 5
    assert "not-in-the-cache" in out["missing"] and "cache" in out["missing"]


def test_hub_repo_id_with_cache_dir_and_local_files_only(saved, tmp_path, monkeypatch):
    policy, folder = saved
    cache = tmp_path / "explicit_cache"
    fill_hf_cache(cache, folder)
    monkeypatch.chdir(tmp_path)  # "acme-robotics/..." must not resolve as a relative folder
    loaded = EDAPolicy.from_pretrained(REPO_ID, cache_dir=cache, local_files_only=True)
    obs = obs_rows()
    np.testing.assert_array_equal(loaded.act(obs, seed=4), policy.act(obs, seed=4))
    with pytest.raises(FileNotFoundError, match="cache"):
        EDAPolicy.from_pretrained("acme-robotics/other", cache_dir=cache, local_files_only=True)


def test_inference_overrides_and_forbidden_overrides(saved):
    policy, folder = saved
    loaded = EDAPolicy.from_pretrained(folder, num_steps=5, num_candidates=2)
    assert loaded.config.num_steps == 5 and loaded.config.num_candidates == 2
    assert loaded.config.hidden_dim == policy.config.hidden_dim
    obs = obs_rows()
    plain = EDAPolicy.from_pretrained(folder, num_steps=5)
    np.testing.assert_array_equal(plain.act(obs, seed=2), policy.act(obs, seed=2, num_steps=5))
    assert not np.array_equal(plain.act(obs, seed=2), policy.act(obs, seed=2))
    with pytest.raises(TypeError, match="hidden_dim"):
        EDAPolicy.from_pretrained(folder, hidden_dim=32)
    with pytest.raises(TypeError, match="obs_dim"):
        EDAPolicy.from_pretrained(folder, obs_dim=5)
    with pytest.raises(ValueError, match="num_steps"):
        EDAPolicy.from_pretrained(folder, num_steps=0)


def test_device_argument_and_to_cpu(saved):
    policy, folder = saved
    loaded = EDAPolicy.from_pretrained(folder, device="cpu")
    assert loaded.device == torch.device("cpu")
    moved = loaded.to("cpu")
    assert moved.device.type == "cpu"
    obs = obs_rows()
    np.testing.assert_array_equal(moved.act(obs, seed=1), policy.act(obs, seed=1))
    loaded2 = EDAPolicy.from_pretrained(folder, device=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in loaded2.parameters())


# ----------------------------------------------------------------------------- strict loading


def test_missing_tensor_is_named(saved):
    _, folder = saved
    rewrite_weights(folder, lambda t: t.pop("energy.head.bias"))
    with pytest.raises(CheckpointFormatError, match=r"missing tensors \['energy.head.bias'\]"):
        EDAPolicy.from_pretrained(folder)


def test_missing_buffer_is_named(saved):
    _, folder = saved
    rewrite_weights(folder, lambda t: t.pop("obs_std"))
    with pytest.raises(CheckpointFormatError, match="obs_std"):
        EDAPolicy.from_pretrained(folder)


def test_unexpected_tensor_is_named(saved):
    _, folder = saved
    rewrite_weights(folder, lambda t: t.update({"energy.extra_layer.weight": torch.zeros(2, 2)}))
    with pytest.raises(CheckpointFormatError, match=r"unexpected tensors \['energy.extra_layer.weight'\]"):
        EDAPolicy.from_pretrained(folder)


def test_misshaped_tensor_is_named_with_both_shapes(saved):
    _, folder = saved

    def widen(t):
        t["energy.input_proj.weight"] = torch.zeros(64, 81)

    rewrite_weights(folder, widen)
    with pytest.raises(CheckpointFormatError) as info:
        EDAPolicy.from_pretrained(folder)
    message = str(info.value)
    assert "energy.input_proj.weight" in message and "(64, 81)" in message and "(64, 80)" in message


def test_nan_weights_are_refused(saved):
    _, folder = saved

    def poison(t):
        t["energy.blocks.0.fc1.weight"][0, 0] = float("nan")

    rewrite_weights(folder, poison)
    with pytest.raises(CheckpointFormatError, match=r"energy\.blocks\.0\.fc1\.weight.*NaN"):
        EDAPolicy.from_pretrained(folder)


def test_inf_observation_stats_are_refused(saved):
    _, folder = saved

    def poison(t):
        t["obs_mean"][3] = float("inf")

    rewrite_weights(folder, poison)
    with pytest.raises(CheckpointFormatError, match="obs_mean"):
        EDAPolicy.from_pretrained(folder)


def test_newer_format_version_says_upgrade(saved):
    _, folder = saved
    rewrite_config(folder, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointFormatError, match="upgrade") as info:
        EDAPolicy.from_pretrained(folder)
    assert str(FORMAT_VERSION + 1) in str(info.value)


def test_config_with_unknown_field_is_refused(saved):
    _, folder = saved
    rewrite_config(folder, lambda d: d.update(mystery_knob=3))
    with pytest.raises(CheckpointFormatError, match="mystery_knob"):
        EDAPolicy.from_pretrained(folder)


@pytest.mark.parametrize(
    "foreign",
    [
        {"model_type": "bert", "hidden_size": 768, "architectures": ["BertModel"]},
        {"_class_name": "UNet2DModel", "_diffusers_version": "0.30.0"},
    ],
    ids=["transformers", "diffusers"],
)
def test_other_library_checkpoint_is_not_an_eda_policy(saved, foreign):
    _, folder = saved
    (folder / "config.json").write_text(json.dumps(foreign))
    with pytest.raises(CheckpointFormatError, match="not an eda-policy checkpoint"):
        EDAPolicy.from_pretrained(folder)


def test_folder_without_weights_says_so(saved):
    _, folder = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointFormatError, match="model.safetensors"):
        EDAPolicy.from_pretrained(folder)


def test_empty_folder_says_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointFormatError, match="config.json"):
        EDAPolicy.from_pretrained(tmp_path)


def test_corrupt_weights_file_is_refused(saved):
    _, folder = saved
    (folder / "model.safetensors").write_bytes(b"this is not safetensors")
    with pytest.raises(CheckpointFormatError, match="safetensors"):
        EDAPolicy.from_pretrained(folder)


def test_weights_of_another_config_are_refused(saved, tmp_path):
    """Weights are checked against config.json: a bigger network's tensors do not load into a tiny one."""
    _, folder = saved
    bigger = make_tiny_policy(seed=5, has_critic=True, hidden_dim=96)
    other = tmp_path / "other"
    bigger.save_pretrained(other)
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(CheckpointFormatError, match="mis-shaped"):
        EDAPolicy.from_pretrained(folder)
