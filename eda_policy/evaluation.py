"""Roll a policy out in Gymnasium: returns, D4RL-style normalised scores, and videos."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class EvaluationResult:
    """Per-episode returns and lengths, with summary statistics."""

    env_id: str
    seed: int
    returns: list[float]
    lengths: list[int]
    normalized_scores: list[float] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def mean_normalized(self) -> float | None:
        return None if self.normalized_scores is None else float(np.mean(self.normalized_scores))

    @property
    def std_normalized(self) -> float | None:
        return None if self.normalized_scores is None else float(np.std(self.normalized_scores))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            mean_return=self.mean_return,
            std_return=self.std_return,
            mean_normalized=self.mean_normalized,
            std_normalized=self.std_normalized,
            num_episodes=len(self.returns),
        )
        return out

    def summary(self) -> str:
        text = f"{self.env_id}: return {self.mean_return:.1f} +- {self.std_return:.1f} over {len(self.returns)} episodes"
        if self.normalized_scores is not None:
            text += f", normalised score {self.mean_normalized:.1f} +- {self.std_normalized:.1f}"
        return text


def normalized_score(returns: np.ndarray, ref_min: float, ref_max: float) -> np.ndarray:
    """D4RL normalised score: 100 (R - random) / (expert - random)."""
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)


def run_episodes(
    act: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    num_episodes: int,
    *,
    seed: int = 0,
    max_parallel: int = 20,
    env_kwargs: dict[str, Any] | None = None,
) -> tuple[list[float], list[int]]:
    """Run ``num_episodes`` episodes, ``max_parallel`` at a time in a synchronous vector env.

    Episode ``i`` is reset with seed ``seed + i``, so results do not depend on ``max_parallel``.
    ``act`` maps a batch of observations (n, obs_dim) to actions (n, act_dim).
    """
    import gymnasium as gym

    returns: list[float] = []
    lengths: list[int] = []
    for start in range(0, num_episodes, max_parallel):
        n = min(max_parallel, num_episodes - start)
        envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", **(env_kwargs or {}))
        try:
            obs, _ = envs.reset(seed=[seed + start + i for i in range(n)])
            ep_return = np.zeros(n)
            ep_len = np.zeros(n, dtype=np.int64)
            running = np.ones(n, dtype=bool)
            while running.any():
                actions = np.asarray(act(obs), dtype=np.float32).reshape(n, -1)
                obs, reward, terminated, truncated, _ = envs.step(actions)
                ep_return += np.where(running, reward, 0.0)
                ep_len += running
                running &= ~(terminated | truncated)
        finally:
            envs.close()
        returns.extend(float(r) for r in ep_return)
        lengths.extend(int(x) for x in ep_len)
    return returns, lengths


def evaluate_policy(
    policy: Any,
    env_id: str | None = None,
    num_episodes: int = 10,
    *,
    seed: int = 0,
    deterministic: bool = False,
    num_steps: int | None = None,
    num_candidates: int | None = None,
    max_parallel: int = 20,
) -> EvaluationResult:
    """Evaluate an :class:`~eda_policy.EDAPolicy` for ``num_episodes`` episodes with fixed seeds."""
    import torch

    config = policy.config
    env_id = env_id or config.env_id
    if env_id is None:
        raise ValueError("the policy's config has no env_id: pass env_id=")
    import gymnasium as gym

    probe = gym.make(env_id)
    try:
        policy.check_env(probe)  # a clear error instead of a silent mismatch of spaces
    finally:
        probe.close()
    generator = torch.Generator(device=policy.device).manual_seed(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        return policy.act(
            obs,
            deterministic=deterministic,
            generator=generator,
            num_steps=num_steps,
            num_candidates=num_candidates,
        )

    returns, lengths = run_episodes(act, env_id, num_episodes, seed=seed, max_parallel=max_parallel)
    scores = None
    if config.ref_min_score is not None and config.ref_max_score is not None:
        scores = normalized_score(np.asarray(returns), config.ref_min_score, config.ref_max_score).tolist()
    settings = {
        "deterministic": deterministic,
        "num_steps": config.num_steps if num_steps is None else num_steps,
        "num_candidates": config.num_candidates if num_candidates is None else num_candidates,
    }
    return EvaluationResult(env_id, seed, returns, lengths, scores, settings)


def record_video(
    policy: Any,
    path: str | Path,
    env_id: str | None = None,
    *,
    seed: int = 0,
    max_steps: int = 1000,
    fps: int = 30,
    frame_skip: int = 4,
    size: tuple[int, int] = (240, 240),
) -> tuple[Path, float]:
    """Render one episode to a GIF (or MP4 with imageio-ffmpeg); returns (path, episode return).

    Headless machines need ``MUJOCO_GL=egl`` (or ``osmesa``) set before MuJoCo is imported.
    """
    import gymnasium as gym
    import imageio.v2 as imageio
    import torch

    env_id = env_id or policy.config.env_id
    env = gym.make(env_id, render_mode="rgb_array", width=size[0], height=size[1])
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    frames = []
    total = 0.0
    try:
        obs, _ = env.reset(seed=seed)
        for step in range(max_steps):
            if step % frame_skip == 0:
                frames.append(env.render())
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs, generator=generator))
            total += float(reward)
            if terminated or truncated:
                break
    finally:
        env.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, frames, duration=1000.0 * frame_skip / fps, loop=0)
    else:
        imageio.mimsave(path, frames, fps=fps / frame_skip)
    return path, total
