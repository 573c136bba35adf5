"""Stage 3: alignment. Draw K behavior samples per state once, label them, then fine-tune a copy.

The aligned policy pi (energy f_theta) and the frozen reference mu (energy f_phi) share one
noising per action; the logits beta * (f_theta - f_phi) are an implicit log-ratio, trained by
cross-entropy against softmax(alpha * Q) (or a one-hot preference on the best action).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from eda_policy.networks import EnergyNetwork
from eda_policy.policy import EDAPolicy
from eda_policy.schedule import VPSchedule

QFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Q(obs_norm (M, S), action in [-1, 1] (M, A)) -> (M,)."""


class LabelValidationError(ValueError):
    """A Q-label table whose shapes or values do not fit the policy."""


@dataclass
class AlignmentSet:
    """States (normalised, (N, S)), candidate actions in [-1, 1] (N, K, A), and their Q-labels (N, K)."""

    obs: torch.Tensor
    actions: torch.Tensor
    q_values: torch.Tensor

    def __len__(self) -> int:
        return self.obs.shape[0]

    @property
    def num_actions(self) -> int:
        return self.actions.shape[1]


@torch.no_grad()
def draw_candidates(
    policy: EDAPolicy,
    obs_norm: torch.Tensor,
    num_actions: int,
    *,
    sample_steps: int,
    generator: torch.Generator,
    chunk: int = 4096,
) -> torch.Tensor:
    """K behavior samples per state, in [-1, 1]: (N, K, A)."""
    out = []
    for start in range(0, obs_norm.shape[0], max(1, chunk // num_actions)):
        block = obs_norm[start : start + max(1, chunk // num_actions)]
        repeated = block.repeat_interleave(num_actions, dim=0)
        acts = policy.sample_normalized(repeated, num_steps=sample_steps, generator=generator)
        out.append(acts.view(block.shape[0], num_actions, -1))
    return torch.cat(out)


@torch.no_grad()
def label_candidates(q_fn: QFunction, obs_norm: torch.Tensor, actions: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Q-labels (N, K) for candidate actions (N, K, A) by a Q-function of (obs_norm, action)."""
    n, k, a = actions.shape
    flat_obs = obs_norm.repeat_interleave(k, dim=0)
    flat_act = actions.reshape(n * k, a)
    q = torch.cat([q_fn(flat_obs[i : i + chunk], flat_act[i : i + chunk]).reshape(-1) for i in range(0, n * k, chunk)])
    if q.shape[0] != n * k:
        raise LabelValidationError(f"the Q-function returned {q.shape[0]} values for {n * k} (state, action) pairs")
    if not bool(torch.isfinite(q).all()):
        raise LabelValidationError("the Q-function returned NaN or inf")
    return q.view(n, k)


def alignment_set_from_table(policy: EDAPolicy, states: np.ndarray, actions: np.ndarray, q_values: np.ndarray) -> AlignmentSet:
    """A user's labelled table: raw states (N, S), candidate actions in env units (N, K, A), Q-values (N, K)."""
    cfg = policy.config
    states = _numeric("states", states)
    actions = _numeric("actions", actions)
    q_values = _numeric("q_values", q_values)
    if states.ndim != 2 or states.shape[1] != cfg.obs_dim:
        raise LabelValidationError(f"states has shape {states.shape}; expected (N, {cfg.obs_dim})")
    n = states.shape[0]
    if actions.ndim != 3 or actions.shape[0] != n or actions.shape[2] != cfg.act_dim:
        raise LabelValidationError(f"actions has shape {actions.shape}; expected (N={n}, K, {cfg.act_dim})")
    k = actions.shape[1]
    if k < 2:
        raise LabelValidationError(f"alignment needs K >= 2 candidate actions per state, got K={k}")
    if q_values.shape != (n, k):
        raise LabelValidationError(f"q_values has shape {q_values.shape}; expected (N, K) = ({n}, {k}) to match actions")
    low, high = np.asarray(cfg.action_low), np.asarray(cfg.action_high)
    tol = 1e-4 * (high - low)
    if np.any(actions < low - tol) or np.any(actions > high + tol):
        raise LabelValidationError(f"actions fall outside the policy's action bounds [{low}, {high}]")
    device = policy.device
    obs_t = policy.normalize_obs(torch.as_tensor(states, dtype=torch.float32, device=device))
    act_t = policy.from_env_action(torch.as_tensor(actions, dtype=torch.float32, device=device)).clamp(-1.0, 1.0)
    return AlignmentSet(obs_t, act_t, torch.as_tensor(q_values, dtype=torch.float32, device=device))


def _numeric(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise LabelValidationError(f"{name} has dtype {array.dtype}; expected numbers")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise LabelValidationError(f"{name} contains NaN or inf")
    return array


def alignment_loss(
    policy_energy: EnergyNetwork,
    reference_energy: EnergyNetwork,
    schedule: VPSchedule,
    obs: torch.Tensor,
    actions: torch.Tensor,
    q_values: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    t_min: float,
    target: str = "softmax",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cross-entropy between softmax(alpha Q) (or one-hot best) and softmax(beta (f_theta - f_phi)).

    One t per state, shared by its K actions; independent noise per action. Equals ln K when
    the policy equals the reference.
    """
    b, k, a = actions.shape
    t = torch.rand(b, device=actions.device, generator=generator) * (1.0 - t_min) + t_min
    noise = torch.randn(actions.shape, device=actions.device, generator=generator)
    t_rep = t.repeat_interleave(k)
    noisy = schedule.add_noise(actions.reshape(b * k, a), t_rep, noise.reshape(b * k, a))
    obs_rep = obs.repeat_interleave(k, dim=0)
    f_policy = policy_energy(noisy, obs_rep, t_rep).view(b, k)
    with torch.no_grad():
        f_reference = reference_energy(noisy, obs_rep, t_rep).view(b, k)
    logits = beta * (f_policy - f_reference)
    if target == "softmax":
        probs = torch.softmax(alpha * q_values, dim=-1)
    elif target == "preference":
        probs = nn.functional.one_hot(q_values.argmax(dim=-1), k).to(logits.dtype)
    else:
        raise ValueError(f"unknown alignment target {target!r}")
    return -(probs * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()

