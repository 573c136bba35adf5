"""Fine-tune (align) a pretrained EDA policy on your own Q-labels.

Two ways to give labels:

* a Q-function: any callable or ``nn.Module`` ``q(obs, action) -> (M,)`` taking raw observations
  (M, obs_dim) and actions in the env's units (M, act_dim) as float32 tensors; K candidate actions
  per state are drawn from the policy and labelled by it;
* a labelled table: ``states`` (N, obs_dim), candidate ``actions`` (N, K, act_dim), ``q_values`` (N, K).

    >>> from training.finetune import finetune
    >>> aligned = finetune("checkpoints/hopper-medium", states=obs, q_function=my_q, output="runs/mine")
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from eda_policy import EDAPolicy

from .alignment import AlignmentSet, LabelValidationError, alignment_set_from_table, draw_candidates, label_candidates
from .config import AlignmentConfig
from .stages import align, seeded_generator

UserQ = Callable[[torch.Tensor, torch.Tensor], Any]


def labels_from_q_function(
    policy: EDAPolicy, states: np.ndarray, q_function: UserQ, config: AlignmentConfig, seed: int = 0
) -> AlignmentSet:
    """Draw K candidates per state from ``policy`` and label them with the user's Q(s, a)."""
    states = np.asarray(states)
    if states.dtype.kind not in "fiu" or states.ndim != 2 or states.shape[1] != policy.config.obs_dim:
        raise LabelValidationError(
            f"states must be numbers of shape (N, {policy.config.obs_dim}), got {states.dtype} {states.shape}"
        )
    if not np.isfinite(states).all():
        raise LabelValidationError("states contain NaN or inf")
    obs = torch.as_tensor(states, dtype=torch.float32, device=policy.device)
    obs_norm = policy.normalize_obs(obs)
    actions = draw_candidates(
        policy, obs_norm, config.num_actions, sample_steps=config.sample_steps, generator=seeded_generator(policy.device, seed * 1000 + 3)
    )

    def q_normalised(o_norm: torch.Tensor, a_norm: torch.Tensor) -> torch.Tensor:
        raw_obs = o_norm * policy.obs_std + policy.obs_mean
        value = q_function(raw_obs, policy.to_env_action(a_norm))
        return torch.as_tensor(value, dtype=torch.float32, device=policy.device).reshape(-1)

    return AlignmentSet(obs_norm, actions, label_candidates(q_normalised, obs_norm, actions))


def finetune(
    policy: EDAPolicy | str | Path,
    *,
    output: str | Path,
    states: np.ndarray | None = None,
    q_function: UserQ | None = None,
    actions: np.ndarray | None = None,
    q_values: np.ndarray | None = None,
    config: AlignmentConfig | None = None,
    seed: int = 0,
    progress: bool = True,
    **overrides: Any,
) -> EDAPolicy:
    """Align ``policy`` to the given Q-labels; writes a ``from_pretrained`` folder to ``output``.

    ``overrides`` change fields of :class:`AlignmentConfig` (``steps``, ``beta``, ``alpha``...).
    """
    reference = policy if isinstance(policy, EDAPolicy) else EDAPolicy.from_pretrained(policy)
    config = dataclasses.replace(config or AlignmentConfig(), **overrides)
    if states is None:
        raise LabelValidationError("finetune() needs states (N, obs_dim)")
    if q_function is not None:
        if actions is not None or q_values is not None:
            raise LabelValidationError("give either q_function or a table (actions, q_values), not both")
        alignment_set = labels_from_q_function(reference, states, q_function, config, seed)
    elif actions is not None and q_values is not None:
        alignment_set = alignment_set_from_table(reference, states, actions, q_values)
    else:
        raise LabelValidationError("finetune() needs either q_function or both actions (N, K, A) and q_values (N, K)")
    output = Path(output)
    aligned = align(reference, alignment_set, config, seed=seed, run_dir=output, progress=progress)
    aligned.save_pretrained(output / "policy")
    return aligned
