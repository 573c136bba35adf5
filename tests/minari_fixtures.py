"""Build tiny but real Minari datasets for the tests.

The datasets are made the way real ones are: an actual Gymnasium MuJoCo env is rolled out with
random actions, each episode is put into a ``minari.data_collector.EpisodeBuffer`` and the
buffers are written with ``minari.create_dataset_from_buffers``. Nothing is mocked.

The caller chooses where the dataset goes by setting ``MINARI_DATASETS_PATH`` to ``root``
before the call (``monkeypatch.setenv`` in a test); these helpers never change the environment
themselves and refuse to run when the variable points somewhere else, so a test can never write
into a user's real dataset folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# D4RL reference returns (random, expert), stored in the dataset metadata like the shared datasets do.
HOPPER_REF = (-20.272305, 3234.3)
WALKER2D_REF = (1.629008, 4592.3)

CORRUPTIONS = ("nan", "action_range", "tiny_overshoot", "mid_termination", "short_actions")
TINY_OVERSHOOT = 5e-5  # below data.py's default clip tolerance of 1e-4


def make_tiny_hopper_dataset(
    root: Path,
    dataset_id: str = "test/hopper/tiny-v0",
    num_episodes: int = 3,
    max_steps: int = 40,
    seed: int = 0,
    corrupt: str | None = None,
) -> str:
    """Create a tiny Hopper-v5 Minari dataset under ``root`` and return its id.

    Even-numbered episodes use small random actions (scale 0.1), so the hopper stays up and the
    episode ends by the time limit (``max_steps``, a truncation); odd-numbered episodes use full
    random actions, so the hopper falls and the episode ends by termination. With the defaults
    (3 episodes, 40 steps, seed 0) episodes 0 and 2 are truncated and episode 1 terminates.

    ``corrupt``: ``"nan"`` puts a NaN into observations of the last episode (step 2, feature 3);
    ``"action_range"`` sets one action of the last episode to 1.5 (outside [-1, 1]);
    ``"tiny_overshoot"`` sets it to ``1 + TINY_OVERSHOOT`` (within the loader's clip tolerance);
    ``"mid_termination"`` flags a termination at step 1, before the episode's end;
    ``"short_actions"`` drops the last action, so actions are one row shorter than rewards.
    The corrupted value goes into episode ``num_episodes - 1``.
    """
    return make_tiny_dataset(
        root,
        dataset_id,
        env_id="Hopper-v5",
        ref_scores=HOPPER_REF,
        num_episodes=num_episodes,
        max_steps=max_steps,
        seed=seed,
        corrupt=corrupt,
    )


def make_tiny_dataset(
    root: Path,
    dataset_id: str,
    *,
    env_id: str = "Hopper-v5",
    ref_scores: tuple[float, float] | None = HOPPER_REF,
    num_episodes: int = 3,
    max_steps: int = 40,
    seed: int = 0,
    corrupt: str | None = None,
) -> str:
    """Same as :func:`make_tiny_hopper_dataset` for any Gymnasium env with Box spaces (e.g. Walker2d-v5)."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    configured = os.environ.get("MINARI_DATASETS_PATH")
    if configured is None or Path(configured).resolve() != Path(root).resolve():
        raise RuntimeError(
            f"set MINARI_DATASETS_PATH to {str(root)!r} before calling (e.g. monkeypatch.setenv); "
            f"it is {configured!r}"
        )
    if corrupt is not None and corrupt not in CORRUPTIONS:
        raise ValueError(f"corrupt must be None or one of {CORRUPTIONS}, got {corrupt!r}")
    if num_episodes < 1 or max_steps < 3:
        raise ValueError("need num_episodes >= 1 and max_steps >= 3")

    env = gym.make(env_id, max_episode_steps=max_steps)
    rng = np.random.default_rng(seed)
    act_dim = env.action_space.shape[0]
    buffers = []
    try:
        for episode in range(num_episodes):
            scale = 0.1 if episode % 2 == 0 else 1.0
            obs, _ = env.reset(seed=seed * 1000 + episode)
            observations = [np.asarray(obs, dtype=np.float64)]
            actions, rewards, terminations, truncations = [], [], [], []
            while True:
                action = (scale * rng.uniform(-1.0, 1.0, size=act_dim)).astype(np.float32)
                obs, reward, terminated, truncated, _ = env.step(action)
                observations.append(np.asarray(obs, dtype=np.float64))
                actions.append(action)
                rewards.append(float(reward))
                terminations.append(bool(terminated))
                truncations.append(bool(truncated))
                if terminated or truncated:
                    break
            obs_array = np.stack(observations)
            act_array = np.stack(actions)
            if episode == num_episodes - 1 and corrupt is not None:
                if corrupt == "nan":
                    obs_array[min(2, len(obs_array) - 1), 3] = np.nan
                elif corrupt == "action_range":
                    act_array[min(1, len(act_array) - 1), 0] = 1.5
                elif corrupt == "tiny_overshoot":
                    act_array[min(1, len(act_array) - 1), 0] = np.float32(1.0 + TINY_OVERSHOOT)
                elif corrupt == "mid_termination":
                    terminations[1] = True
                else:  # short_actions
                    act_array = act_array[:-1]
            buffers.append(
                EpisodeBuffer(
                    id=episode,
                    seed=seed * 1000 + episode,
                    observations=obs_array,
                    actions=act_array,
                    rewards=rewards,
                    terminations=terminations,
                    truncations=truncations,
                )
            )
        ref_kwargs = {}
        if ref_scores is not None:
            ref_kwargs = {"ref_min_score": ref_scores[0], "ref_max_score": ref_scores[1]}
        minari.create_dataset_from_buffers(
            dataset_id,
            buffer=buffers,
            env=env,
            eval_env=env.spec,
            algorithm_name="random",
            author="eda-policy tests",
            author_email="tests@example.invalid",
            code_permalink="tests/minari_fixtures.py",
            description=f"{num_episodes} random-action episodes of {env_id} for unit tests",
            **ref_kwargs,
        )
    finally:
        env.close()
    return dataset_id
