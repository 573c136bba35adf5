"""EDAConfig: everything needed to rebuild an EDA policy from its ``config.json``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

MODEL_TYPE = "eda-policy"
FORMAT_VERSION = 1


class CheckpointFormatError(ValueError):
    """A checkpoint that this version of eda-policy cannot load."""


@dataclass
class EDAConfig:
    """Configuration of an EDA policy.

    The network defaults reproduce the paper's architecture (about 1.65M parameters for
    Hopper); every size is a field so smaller or larger networks are one override away.
    """

    obs_dim: int
    act_dim: int
    action_low: list[float] = field(default_factory=list)
    action_high: list[float] = field(default_factory=list)

    # Scalar-energy network f(a_t, s, t).
    hidden_dim: int = 256
    num_blocks: int = 3
    ff_mult: int = 4
    action_embed_dim: int = 128
    obs_embed_dim: int = 96
    time_embed_dim: int = 32
    fourier_scale: float = 30.0
    dropout: float = 0.1

    # VP schedule (linear beta) and sampler.
    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    num_steps: int = 3
    solver_order: int = 2
    lower_order_final: bool = True  # measured: better policy scores at 2-5 steps (BENCHMARKS.md)
    clip_denoised: bool = True

    # Best-of-N candidate selection (needs a critic in the checkpoint).
    num_candidates: int = 1
    has_critic: bool = False
    critic_hidden_dim: int = 256
    critic_num_layers: int = 2

    normalize_observations: bool = True

    # Provenance and evaluation.
    env_id: str | None = None
    dataset_id: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None

    model_type: str = MODEL_TYPE
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.action_low:
            self.action_low = [-1.0] * self.act_dim
        if not self.action_high:
            self.action_high = [1.0] * self.act_dim
        self.action_low = [float(x) for x in self.action_low]
        self.action_high = [float(x) for x in self.action_high]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that does not make sense."""
        if self.obs_dim < 1 or self.act_dim < 1:
            raise ValueError(f"obs_dim and act_dim must be >= 1, got {self.obs_dim} and {self.act_dim}")
        if len(self.action_low) != self.act_dim or len(self.action_high) != self.act_dim:
            raise ValueError(
                f"action_low/action_high must have act_dim={self.act_dim} entries, "
                f"got {len(self.action_low)} and {len(self.action_high)}"
            )
        for i, (lo, hi) in enumerate(zip(self.action_low, self.action_high)):
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
                raise ValueError(
                    f"action bound {i} must be finite with low < high, got [{lo}, {hi}]; "
                    "EDA samples actions in a bounded box"
                )
        if self.num_steps < 1:
            raise ValueError(f"num_steps (network evaluations) must be >= 1, got {self.num_steps}")
        if self.solver_order not in (1, 2):
            raise ValueError(f"solver_order must be 1 or 2, got {self.solver_order}")
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if self.num_candidates > 1 and not self.has_critic:
            raise ValueError(
                f"num_candidates={self.num_candidates} (best-of-N) needs a critic, and this policy has none "
                "(has_critic=False): use num_candidates=1, or a checkpoint trained with a critic"
            )
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {self.t_min}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "EDAConfig":
        """Build a config from a parsed ``config.json``, refusing what this version cannot read."""
        if not isinstance(data, dict) or data.get("model_type") != MODEL_TYPE:
            raise CheckpointFormatError(
                f"{source} is not an eda-policy checkpoint (config.json has model_type="
                f"{data.get('model_type') if isinstance(data, dict) else None!r}, expected {MODEL_TYPE!r})"
            )
        version = data.get("format_version")
        if not isinstance(version, int):
            raise CheckpointFormatError(f"{source}: config.json has no integer format_version")
        if version > FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{source} was written in checkpoint format {version}, newer than the format "
                f"{FORMAT_VERSION} this eda-policy reads: upgrade with `pip install -U eda-policy`"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointFormatError(f"{source}: config.json has unknown fields {unknown}")
        return cls(**data)
