"""Shared fixtures for the eda_policy tests: one CPU thread and a tiny, fast network config."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from eda_policy import EDAConfig, EDAPolicy

# The test machine has 2 cores; one intra-op thread keeps timings steady and avoids oversubscription.
torch.set_num_threads(1)


def load_benchmark_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (a script folder, not a package) as a module."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOPPER_OBS_DIM = 11
HOPPER_ACT_DIM = 3

# Small enough that a full act() costs about a millisecond, big enough to have every layer type.
TINY_NETWORK = dict(hidden_dim=64, num_blocks=1, ff_mult=2, action_embed_dim=32, obs_embed_dim=32, time_embed_dim=16)


def make_tiny_config(**overrides) -> EDAConfig:
    """A Hopper-sized (11 -> 3) config with a tiny network; ``overrides`` replace any field."""
    fields = dict(obs_dim=HOPPER_OBS_DIM, act_dim=HOPPER_ACT_DIM, env_id="Hopper-v5", **TINY_NETWORK)
    fields.update(overrides)
    return EDAConfig(**fields)


def make_tiny_policy(seed: int = 0, **overrides) -> EDAPolicy:
    """A tiny untrained policy with reproducible weights and non-trivial observation statistics."""
    torch.manual_seed(seed)
    policy = EDAPolicy(make_tiny_config(**overrides))
    rng = np.random.default_rng(seed)
    cfg = policy.config
    policy.set_observation_stats(rng.normal(size=cfg.obs_dim), rng.uniform(0.5, 2.0, size=cfg.obs_dim))
    return policy.eval()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def tiny_config() -> EDAConfig:
    return make_tiny_config()


@pytest.fixture
def tiny_policy() -> EDAPolicy:
    return make_tiny_policy()


@pytest.fixture
def obs_batch() -> np.ndarray:
    """Eight Hopper-like observations (float64, as Gymnasium returns them)."""
    return np.random.default_rng(123).normal(size=(8, HOPPER_OBS_DIM))
