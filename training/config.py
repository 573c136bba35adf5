"""Dataclass configs for the three training stages, the per-task presets, and a whole run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BehaviorConfig:
    """Stage 1: behavior pretraining with the bottleneck diffusion (BDM) loss."""

    steps: int = 30_000
    batch_size: int = 256
    lr: float = 3e-4
    # Network size. The paper's (hidden 256, 3 blocks of 256->1024->256, 1.65M parameters) is
    # EDAConfig's default; the CPU default here (0.6M parameters) trains 2.5x faster per step.
    hidden_dim: int = 256
    num_blocks: int = 2
    ff_mult: int = 2
    dropout: float = 0.1


@dataclass
class CriticConfig:
    """Stage 2: implicit Q-learning (twin Q + Polyak target + V by expectile regression)."""

    steps: int = 100_000
    batch_size: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    expectile: float = 0.7
    hidden_dim: int = 256
    num_layers: int = 2


@dataclass
class AlignmentConfig:
    """Stage 3: align a copy of the behavior model to softmax(alpha * Q) over K behavior samples."""

    steps: int = 4_000
    batch_states: int = 64
    num_actions: int = 16  # K
    num_states: int = 20_000  # states drawn (seeded) for the alignment set; 0 = all
    sample_steps: int = 3  # network evaluations used to draw the K behavior samples
    alpha: float = 3.0
    beta: float = 0.2
    lr: float = 5e-5
    target: str = "softmax"  # or "preference": one-hot on the best of the K actions
    label_fraction: float = 1.0  # keep this fraction of states (seeded) for the 1%-labels setting
    policy_candidates: int = 4  # best-of-N by the critic, the exported policy's act() default

    def __post_init__(self) -> None:
        if self.target not in ("softmax", "preference"):
            raise ValueError(f"target must be 'softmax' or 'preference', got {self.target!r}")
        if self.num_actions < 2:
            raise ValueError(f"num_actions (K) must be >= 2, got {self.num_actions}")


# Paper, Table 2: beta per task; keyed by the exact dataset ids of the shared datasets.
BETA_PRESETS: dict[str, float] = {
    "hopper-medium-expert": 2.0,
    "hopper-medium": 0.2,
    "hopper-medium-replay": 0.2,
    "walker2d-medium-expert": 0.3,
    "walker2d-medium": 0.5,
    "walker2d-medium-replay": 0.1,
    "halfcheetah-medium-expert": 2.0,
    "halfcheetah-medium": 0.1,
    "halfcheetah-medium-replay": 0.2,
}
DATASET_PRESETS: dict[tuple[str, ...], str] = {
    ("eda/hopper/medium-v0",): "hopper-medium",
    ("eda/hopper/medium-replay-v0",): "hopper-medium-replay",
    ("eda/hopper/expert-v0", "eda/hopper/medium-v0"): "hopper-medium-expert",
    ("eda/walker2d/medium-v0",): "walker2d-medium",
    ("eda/walker2d/expert-v0", "eda/walker2d/medium-v0"): "walker2d-medium-expert",
}


def preset_for(dataset_ids: list[str]) -> str | None:
    """The paper's task name for a known combination of dataset ids, else None."""
    return DATASET_PRESETS.get(tuple(sorted(dataset_ids)))


@dataclass
class RunConfig:
    """A whole run: data, seed, stages, evaluation and output folder."""

    dataset_ids: list[str]
    output: str
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    preset: str | None = None
    eval_episodes: int = 10
    eval_every: int = 0  # steps between in-training evaluations (0 = only at the end)
    log_every: int = 100
    checkpoint_every: int = 1_000
    video: bool = True
    download: bool = False
    behavior: BehaviorConfig = field(default_factory=BehaviorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        data = dict(data)
        data["behavior"] = BehaviorConfig(**data.get("behavior", {}))
        data["critic"] = CriticConfig(**data.get("critic", {}))
        data["alignment"] = AlignmentConfig(**data.get("alignment", {}))
        return cls(**data)

    def apply_preset(self) -> None:
        """Fill ``preset`` from the dataset ids when known and take its beta (explicit overrides win later)."""
        if self.preset is None:
            self.preset = preset_for(self.dataset_ids)
        if self.preset is not None:
            if self.preset not in BETA_PRESETS:
                raise ValueError(f"unknown preset {self.preset!r}; known: {sorted(BETA_PRESETS)}")
            self.alignment.beta = BETA_PRESETS[self.preset]
