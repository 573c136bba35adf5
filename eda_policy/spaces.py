"""Read and check the Box spaces of a Gymnasium env or vector env."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_box_spaces(obs_space: Any, act_space: Any) -> None:
    """Raise ``ValueError`` unless both spaces are flat Boxes and the action box is bounded."""
    from gymnasium import spaces

    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(
            f"EDA policies need a flat Box observation space, got {obs_space}; "
            "wrap the env with gymnasium.wrappers.FlattenObservation"
        )
    if not isinstance(act_space, spaces.Box) or len(act_space.shape) != 1:
        raise ValueError(f"EDA policies need a flat Box action space, got {act_space}")
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise ValueError(
            f"the action space {act_space} is unbounded; EDA samples inside a bounded box: "
            "wrap the env with gymnasium.wrappers.RescaleAction or ClipAction"
        )
    if np.any(np.asarray(act_space.low) >= np.asarray(act_space.high)):
        raise ValueError(f"the action space {act_space} has low >= high")


def box_spaces(env: Any) -> tuple[Any, Any]:
    """(observation space, action space) of one env; for a vector env, of one of its copies."""
    obs_space = getattr(env, "single_observation_space", None) or env.observation_space
    act_space = getattr(env, "single_action_space", None) or env.action_space
    check_box_spaces(obs_space, act_space)
    return obs_space, act_space


def check_spaces(env: Any, *, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray) -> None:
    """Raise ``ValueError`` describing every difference between the env's spaces and a policy's."""
    obs_space, act_space = box_spaces(env)
    problems = []
    if obs_space.shape != (obs_dim,):
        problems.append(f"observation shape {obs_space.shape} != policy's ({obs_dim},)")
    if act_space.shape != action_low.shape:
        problems.append(f"action shape {act_space.shape} != policy's {action_low.shape}")
    elif not (np.allclose(act_space.low, action_low, atol=1e-5) and np.allclose(act_space.high, action_high, atol=1e-5)):
        problems.append(
            f"action bounds [{act_space.low}, {act_space.high}] != policy's [{action_low}, {action_high}]"
        )
    if problems:
        spec = getattr(env, "spec", None)
        name = spec.id if spec is not None else type(env).__name__
        raise ValueError(f"env {name} does not match this policy: " + "; ".join(problems))
