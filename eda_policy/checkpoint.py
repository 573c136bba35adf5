"""Locate checkpoint files (local folder or the Hugging Face Hub) and load safetensors strictly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import CheckpointFormatError, EDAConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def resolve_checkpoint_file(
    repo_id_or_dir: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
) -> Path:
    """Path of ``filename`` in a local checkpoint folder, or downloaded/cached from a Hub repo."""
    source = str(repo_id_or_dir)
    if os.path.isdir(source):
        path = Path(source) / filename
        if not path.is_file():
            raise CheckpointFormatError(
                f"folder {source!r} has no {filename}: it is not an eda-policy checkpoint "
                f"(expected {CONFIG_NAME} and {WEIGHTS_NAME}, as written by save_pretrained)"
            )
        return path
    if os.path.exists(source):
        raise CheckpointFormatError(f"{source!r} is a file; pass the checkpoint folder or a Hub repo id")
    try:
        return Path(
            hf_hub_download(
                repo_id=source,
                filename=filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
                force_download=force_download,
            )
        )
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"{filename} of {source!r} is not in the Hugging Face cache and cannot be downloaded "
            "(offline, HF_HUB_OFFLINE=1 or local_files_only=True); download it once with a network"
        ) from err
    except RemoteEntryNotFoundError as err:
        raise CheckpointFormatError(
            f"Hub repo {source!r} has no {filename}: it is not an eda-policy checkpoint"
        ) from err
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(
            f"{source!r} is neither a local folder nor a Hub repo you can access (check the id, revision and token)"
        ) from err


def read_config(path: Path, source: str) -> EDAConfig:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointFormatError(f"{source}: {CONFIG_NAME} is not valid JSON ({err})") from err
    return EDAConfig.from_dict(data, source=source)


def save_weights(module: nn.Module, path: Path) -> None:
    """Write every parameter and persistent buffer to safetensors (no pickle)."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in module.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt", "library": "eda-policy"})


def load_weights_strict(module: nn.Module, path: Path, source: str) -> None:
    """Load ``path`` into ``module``; every tensor must be present, expected, finite and of the right shape."""
    try:
        stored = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointFormatError(f"{source}: {path.name} is not a readable safetensors file ({err})") from err
    expected = module.state_dict()
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    mismatched = [
        f"{name}: checkpoint {tuple(stored[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in sorted(set(stored) & set(expected))
        if stored[name].shape != expected[name].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if mismatched:
        problems.append(f"mis-shaped tensors [{'; '.join(mismatched)}]")
    if problems:
        raise CheckpointFormatError(
            f"{source}: {path.name} does not match its config.json: " + ", ".join(problems)
            + ". The checkpoint is damaged or was written for another config; nothing was loaded."
        )
    not_finite = sorted(n for n, t in stored.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if not_finite:
        raise CheckpointFormatError(f"{source}: tensors {not_finite} contain NaN or inf; nothing was loaded")
    module.load_state_dict({n: t.to(expected[n].dtype) for n, t in stored.items()}, strict=True)
