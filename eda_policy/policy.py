"""EDAPolicy: a scalar-energy diffusion policy you load in one line and call inside a Gymnasium loop."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_weights_strict,
    read_config,
    resolve_checkpoint_file,
    save_weights,
)
from .config import EDAConfig
from .networks import EnergyNetwork, TwinQ
from .observations import observation_batch
from .sampler import dpm_solver_pp
from .schedule import VPSchedule
from .spaces import box_spaces, check_spaces

def _rebuildable_env_id(spec: Any, obs_space: Any, act_space: Any) -> str | None:
    """``spec.id`` if ``gymnasium.make(spec.id)`` has the same spaces, else None."""
    if spec is None:
        return None
    import gymnasium as gym

    fresh = gym.make(spec.id)
    try:
        same = fresh.observation_space == obs_space and fresh.action_space == act_space
    finally:
        fresh.close()
    return spec.id if same else None


INFERENCE_FIELDS = ("num_steps", "solver_order", "lower_order_final", "clip_denoised", "num_candidates")
"""Config fields that only change sampling and may be overridden when loading a checkpoint."""


class EDAPolicy(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="eda-policy",
    tags=["reinforcement-learning", "offline-rl", "diffusion-policy", "eda"],
    license="mit",
    paper_url="https://arxiv.org/abs/2407.09024",
):
    """Efficient Diffusion Alignment policy: f(a_t, s, t) -> scalar, eps = -sigma_t * grad_a f.

    Parameters are in normalised units: observations are standardised with the stored
    ``obs_mean``/``obs_std`` and actions live in [-1, 1]^A, mapped to the env's bounds on output.
    """

    def __init__(self, config: EDAConfig) -> None:
        super().__init__()
        self.config = config
        self.schedule = VPSchedule(config.beta_min, config.beta_max)
        self.energy = EnergyNetwork(config)
        self.critic = (
            TwinQ(config.obs_dim, config.act_dim, config.critic_hidden_dim, config.critic_num_layers)
            if config.has_critic
            else None
        )
        self.register_buffer("obs_mean", torch.zeros(config.obs_dim))
        self.register_buffer("obs_std", torch.ones(config.obs_dim))
        self.register_buffer("action_low", torch.tensor(config.action_low, dtype=torch.float32))
        self.register_buffer("action_high", torch.tensor(config.action_high, dtype=torch.float32))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, env_or_id: Any, **overrides: Any) -> "EDAPolicy":
        """An untrained policy sized for a Gymnasium env (an env, a vector env or an env id)."""
        import gymnasium as gym

        env = gym.make(env_or_id) if isinstance(env_or_id, str) else env_or_id
        try:
            obs_space, act_space = box_spaces(env)
            spec = getattr(env, "spec", None)
            # The env id is kept only when gym.make(id) rebuilds these spaces (not for a wrapped env).
            overrides.setdefault("env_id", _rebuildable_env_id(spec, obs_space, act_space))
        finally:
            if isinstance(env_or_id, str):
                env.close()
        config = EDAConfig(
            obs_dim=int(obs_space.shape[0]),
            act_dim=int(act_space.shape[0]),
            action_low=[float(x) for x in act_space.low],
            action_high=[float(x) for x in act_space.high],
            **overrides,
        )
        return cls(config)

    @property
    def device(self) -> torch.device:
        return self.obs_mean.device

    def set_observation_stats(self, mean: Any, std: Any, eps: float = 1e-3) -> None:
        """Store the observation mean/std used for normalisation (std floored at ``eps``)."""
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(-1)
        if mean_t.numel() != self.config.obs_dim or std_t.numel() != self.config.obs_dim:
            raise ValueError(f"observation stats must have {self.config.obs_dim} entries")
        if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all()):
            raise ValueError("observation stats contain NaN or inf")
        if not self.config.normalize_observations:
            mean_t, std_t = torch.zeros_like(mean_t), torch.ones_like(std_t)
        self.obs_mean.copy_(mean_t)
        self.obs_std.copy_(std_t.clamp_min(eps))

    # ------------------------------------------------------------------ Hub I/O
    def _save_pretrained(self, save_directory: Path) -> None:
        save_weights(self, Path(save_directory) / WEIGHTS_NAME)

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> str | None:  # type: ignore[override]
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card."""
        kwargs.setdefault("config", self.config)
        return super().save_pretrained(save_directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:  # type: ignore[override]
        kwargs.setdefault("config", self.config)
        return super().push_to_hub(repo_id, **kwargs)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        repo_id_or_dir: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        force_download: bool = False,
        device: str | torch.device | None = None,
        **inference_overrides: Any,
    ) -> "EDAPolicy":
        """Load a checkpoint from a local folder or a Hub repo id, strictly.

        ``inference_overrides`` may change sampling settings only (``num_steps``,
        ``num_candidates``, ``solver_order``, ``clip_denoised``).
        """
        bad = sorted(set(inference_overrides) - set(INFERENCE_FIELDS))
        if bad:
            raise TypeError(f"from_pretrained() cannot override {bad}; allowed: {list(INFERENCE_FIELDS)}")
        source = str(repo_id_or_dir)
        where = dict(
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            force_download=force_download,
        )
        config = read_config(resolve_checkpoint_file(source, CONFIG_NAME, **where), source)
        if inference_overrides:
            config = dataclasses.replace(config, **inference_overrides)
        weights = resolve_checkpoint_file(source, WEIGHTS_NAME, **where)
        policy = cls(config)
        load_weights_strict(policy, weights, source)
        policy.eval()
        return policy.to(device) if device is not None else policy

    # ------------------------------------------------------------------ maths
    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def to_env_action(self, action: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> the env's [low, high] box (after clipping)."""
        action = action.clamp(-1.0, 1.0)
        return self.action_low + (action + 1.0) * 0.5 * (self.action_high - self.action_low)

    def from_env_action(self, action: torch.Tensor) -> torch.Tensor:
        return 2.0 * (action - self.action_low) / (self.action_high - self.action_low) - 1.0

    def noise_prediction(
        self, action_t: torch.Tensor, obs: torch.Tensor, t: torch.Tensor, create_graph: bool = False
    ) -> torch.Tensor:
        """eps_theta = -sigma_t * grad_a f(a_t, s, t); ``create_graph=True`` for training losses."""
        return self.energy.noise_prediction(action_t, obs, t, self.schedule.sigma(t), create_graph=create_graph)

    @torch.no_grad()
    def sample_normalized(
        self,
        obs_norm: torch.Tensor,
        *,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> torch.Tensor:
        """Actions in [-1, 1] for normalised observations (N, obs_dim), one per row.

        No autograd graph is built at all: the observation embedding is computed once, and at each
        step the action gradient of f comes from the network's closed-form backward
        (:meth:`EnergyNetwork.action_gradient`).
        """
        cfg = self.config
        n = obs_norm.shape[0]
        if deterministic:
            x = torch.zeros(n, cfg.act_dim, device=obs_norm.device)
        else:
            x = torch.randn(n, cfg.act_dim, device=obs_norm.device, generator=generator)
        energy = self.energy
        obs_emb = energy.obs_embed(obs_norm)

        def eps_fn(action_t: torch.Tensor, t: float) -> torch.Tensor:
            time_emb = energy.time_mlp(energy.time_features(torch.full((1,), t, device=action_t.device)))
            grad = energy.action_gradient(action_t, obs_emb, time_emb.expand(n, -1))
            return -self.schedule.sigma_at(t) * grad

        with self._eval_mode():
            return dpm_solver_pp(
                eps_fn,
                x,
                self.schedule,
                cfg.num_steps if num_steps is None else num_steps,
                order=cfg.solver_order,
                lower_order_final=cfg.lower_order_final,
                t_end=cfg.t_min,
                clip_denoised=cfg.clip_denoised,
            ).clamp(-1.0, 1.0)

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ user API
    def act(
        self,
        obs: Any,
        deterministic: bool = False,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
        num_steps: int | None = None,
        num_candidates: int | None = None,
    ) -> np.ndarray:
        """Sample an action for one observation ``(obs_dim,)`` -> ``(act_dim,)``, or a batch ``(N, obs_dim)`` -> ``(N, act_dim)``.

        Returns numpy float32 inside the action space. ``seed`` or ``generator`` make it reproducible;
        ``deterministic=True`` starts the ODE at the noise distribution's mode (zero) instead of a draw.
        With a critic in the checkpoint, ``num_candidates > 1`` keeps the best of N samples by Q.
        """
        batch, single = observation_batch(obs, self.config.obs_dim)
        batch = batch.to(self.device)
        if seed is not None:
            if generator is not None:
                raise ValueError("pass either seed or generator, not both")
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        candidates = self.config.num_candidates if num_candidates is None else int(num_candidates)
        if candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {candidates}")
        if candidates > 1 and self.critic is None:
            raise ValueError("best-of-N (num_candidates > 1) needs a checkpoint with a critic")
        if deterministic:
            candidates = 1  # every candidate would be the same action
        obs_norm = self.normalize_obs(batch)
        actions = self._sample_best_of(obs_norm, candidates, num_steps, generator, deterministic)
        out = self.to_env_action(actions).cpu().numpy().astype(np.float32, copy=False)
        return out[0] if single else out

    @torch.no_grad()
    def _sample_best_of(
        self,
        obs_norm: torch.Tensor,
        candidates: int,
        num_steps: int | None,
        generator: torch.Generator | None,
        deterministic: bool,
    ) -> torch.Tensor:
        repeated = obs_norm.repeat_interleave(candidates, dim=0) if candidates > 1 else obs_norm
        actions = self.sample_normalized(
            repeated, num_steps=num_steps, generator=generator, deterministic=deterministic
        )
        if candidates == 1:
            return actions
        assert self.critic is not None
        q = self.critic.min_q(repeated, actions).view(-1, candidates)
        best = q.argmax(dim=1)
        return actions.view(-1, candidates, self.config.act_dim)[torch.arange(best.numel()), best]

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's protocol: ``(action, None)``; works with SB3's ``evaluate_policy``."""
        return self.act(observation, deterministic=deterministic), None

    @torch.no_grad()
    def log_density(self, obs: Any, action: Any, t: float | None = None) -> np.ndarray:
        """The model's unnormalised log-density f(a_t = action, s, t) (default t = t_min).

        ``action`` is in the env's units, one per observation. For an aligned policy pi and its
        reference mu, ``pi.log_density - mu.log_density`` is the implicit log-ratio (see :meth:`log_ratio`).
        """
        batch, single = observation_batch(obs, self.config.obs_dim)
        acts, _ = observation_batch(action, self.config.act_dim)
        if acts.shape[0] != batch.shape[0]:
            raise ValueError(f"got {batch.shape[0]} observations but {acts.shape[0]} actions")
        batch, acts = batch.to(self.device), acts.to(self.device)
        t_value = self.config.t_min if t is None else float(t)
        if not 0.0 < t_value <= 1.0:
            raise ValueError(f"t must be in (0, 1], got {t_value}")
        t_vec = torch.full((batch.shape[0],), t_value, device=self.device)
        with self._eval_mode():
            f = self.energy(self.from_env_action(acts).clamp(-1.0, 1.0), self.normalize_obs(batch), t_vec)
        out = f.cpu().numpy().astype(np.float32)
        return out[0] if single else out

    def log_ratio(self, obs: Any, action: Any, reference: "EDAPolicy", t: float | None = None) -> np.ndarray:
        """log pi(a|s) - log mu(a|s) up to a per-state constant: f_self - f_reference."""
        return self.log_density(obs, action, t) - reference.log_density(obs, action, t)

    def check_env(self, env: Any) -> None:
        """Raise ``ValueError`` if an env's (or vector env's) spaces differ from this policy's."""
        check_spaces(
            env,
            obs_dim=self.config.obs_dim,
            action_low=np.asarray(self.config.action_low, dtype=np.float32),
            action_high=np.asarray(self.config.action_high, dtype=np.float32),
        )

    def extra_repr(self) -> str:
        c = self.config
        return f"obs_dim={c.obs_dim}, act_dim={c.act_dim}, num_steps={c.num_steps}, env_id={c.env_id!r}"
