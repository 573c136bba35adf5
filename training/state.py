"""Resumable training state in one safetensors file (no pickle), written atomically.

Holds module weights, optimizer states (tensors + JSON for the hyperparameters), the stage's
torch.Generator, torch's global RNG (used by dropout) and the step counter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, param_state in state["state"].items():
        for key, value in param_state.items():
            name = f"{prefix}.{index}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_training_state(
    path: Path,
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    generator: torch.Generator,
    step: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write everything needed to resume, to ``path`` via a temporary file and ``os.replace``."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"module.{name}.{key}"] = value.detach().cpu().contiguous()
    optim_meta = {}
    for name, optimizer in optimizers.items():
        optim_tensors, meta = _optimizer_tensors(f"optim.{name}", optimizer)
        tensors.update(optim_tensors)
        optim_meta[name] = meta
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {"step": str(step), "optimizers": json.dumps(optim_meta), "extra": json.dumps(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_training_state(
    path: Path,
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    generator: torch.Generator,
) -> tuple[int, dict[str, Any]]:
    """Restore what :func:`save_training_state` wrote; returns (step, extra)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    for name, module in modules.items():
        prefix = f"module.{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    optim_meta = json.loads(metadata["optimizers"])
    for name, optimizer in optimizers.items():
        meta = optim_meta[name]
        prefix = f"optim.{name}."
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix):].split(".", 1)
                state.setdefault(int(index), {})[field] = value
        for key, value in meta["scalars"].items():
            index, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[field] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(metadata["step"]), json.loads(metadata["extra"])
