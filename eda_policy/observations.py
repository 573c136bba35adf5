"""Turn what users pass to ``act()`` into a checked float32 batch, or say clearly what was wrong."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def observation_batch(obs: Any, obs_dim: int) -> tuple[torch.Tensor, bool]:
    """Return ``(batch, was_single)`` with ``batch`` a float32 CPU-or-device tensor of shape (N, obs_dim).

    Accepts one observation ``(obs_dim,)`` or a batch ``(N, obs_dim)`` as a numpy array, a list or
    a torch tensor of a real numeric dtype. Raises ``ValueError`` for anything else.
    """
    if isinstance(obs, tuple) and len(obs) == 2 and isinstance(obs[1], dict):
        raise ValueError(
            "act() got an (obs, info) tuple, as returned by env.reset(); pass the observation only: "
            "`obs, info = env.reset()` then `policy.act(obs)`"
        )
    if isinstance(obs, dict):
        raise ValueError(
            f"act() got a dict observation (keys {sorted(obs)}); EDA policies take a flat Box "
            f"observation of shape ({obs_dim},): flatten it first, e.g. with gymnasium.wrappers.FlattenObservation"
        )
    if isinstance(obs, torch.Tensor):
        if obs.is_complex() or obs.dtype == torch.bool or not (obs.is_floating_point() or _is_int(obs.dtype)):
            raise ValueError(f"observation tensor has dtype {obs.dtype}; expected a real float or integer dtype")
        batch = obs.detach().to(torch.float32)
    else:
        try:
            array = np.asarray(obs)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"observation could not be read as an array ({err}); expected shape ({obs_dim},) or (N, {obs_dim})") from err
        if array.dtype.kind not in "fiu":
            raise ValueError(
                f"observation has dtype {array.dtype} (kind {array.dtype.kind!r}); expected real numbers "
                f"(float or integer) of shape ({obs_dim},) or (N, {obs_dim})"
            )
        batch = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    single = batch.dim() == 1
    if single:
        batch = batch.unsqueeze(0)
    if batch.dim() != 2 or batch.shape[1] != obs_dim or batch.shape[0] == 0:
        raise ValueError(
            f"observation has shape {tuple(batch.shape[1:]) if single else tuple(batch.shape)}; expected "
            f"({obs_dim},) for one observation or (N, {obs_dim}) with N >= 1 for a batch"
        )
    finite = torch.isfinite(batch).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten().tolist()[:5]
        where = "the observation" if single else f"rows {rows}"
        raise ValueError(f"observation contains NaN or inf in {where}; check the environment or your preprocessing")
    return batch, single


def _is_int(dtype: torch.dtype) -> bool:
    return dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
