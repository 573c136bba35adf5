"""Offline transition data for EDA training: load, check and hold (s, a, r, s', terminal) arrays.

Sources:

* :func:`load_minari` reads one or several Minari datasets (several ids are trained on together,
  e.g. ``["eda/hopper/medium-v0", "eda/hopper/expert-v0"]`` is D4RL's medium-expert).
* :func:`from_arrays` takes a user's own numpy arrays; :func:`load_npz` / :func:`save_npz` store
  them in a ``.npz`` archive (no pickle).
* :func:`concatenate` joins datasets of the same task.

Every constructor checks the data and raises :class:`DataValidationError` (a ``ValueError``)
with a message that says where the problem is: the dataset id, episode and field for Minari data,
the array and first bad row for arrays.

Conventions kept by :class:`TransitionDataset`:

* ``terminals`` is 1.0 only where the environment *terminated* (the agent fell, reached a goal).
  Time-limit truncation is not terminal: the value of the next state is still bootstrapped.
* Rewards are raw; :meth:`TransitionDataset.reward_scale` gives the locomotion scaling
  ``1000 / (max episode return - min episode return)`` computed from ``episode_returns``.
* Actions are in env units and inside ``[action_low, action_high]``. Actions that overshoot a
  bound by at most ``clip_tolerance`` (default 1e-4, e.g. float rounding of a tanh-squashed
  policy) are clipped onto the bound silently; a larger overshoot is an error.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "DataValidationError",
    "TransitionDataset",
    "load_minari",
    "from_arrays",
    "load_npz",
    "save_npz",
    "concatenate",
]

NPZ_REQUIRED_KEYS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "action_low",
    "action_high",
)
NPZ_OPTIONAL_KEYS = (
    "episode_ends",
    "timeouts",
    "episode_returns",
    "env_id",
    "dataset_ids",
    "ref_min_score",
    "ref_max_score",
)


class DataValidationError(ValueError):
    """The data is malformed: wrong shapes or dtypes, NaN/inf, actions outside the action space, ..."""


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class TransitionDataset:
    """Flat arrays of transitions plus what training needs to know about them.

    Fields are coerced on construction (float32 arrays, float64 ``episode_returns``) and checked
    with :meth:`validate`. ``episode_ends`` (an addition to the core fields) holds the index of
    the last transition of each episode, so that the episode structure survives ``save_npz`` /
    ``load_npz``; it is ``None`` where unknown (e.g. after :meth:`subset`).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    episode_returns: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray
    env_id: str | None = None
    dataset_ids: list[str] = field(default_factory=list)
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    episode_ends: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("observations", "actions", "rewards", "next_observations", "action_low", "action_high"):
            setattr(self, name, _numeric(name, getattr(self, name)).astype(np.float32, copy=False))
        self.terminals = _numeric("terminals", self.terminals, allow_bool=True).astype(np.float32, copy=False)
        self.episode_returns = _numeric("episode_returns", self.episode_returns).astype(np.float64, copy=False)
        if self.episode_ends is not None:
            ends = np.asarray(self.episode_ends)
            if ends.dtype.kind not in "iu":
                raise DataValidationError(f"episode_ends has dtype {ends.dtype}; expected integers")
            self.episode_ends = ends.astype(np.int64, copy=False)
        if self.env_id is not None:
            self.env_id = str(self.env_id)
        if isinstance(self.dataset_ids, str):
            self.dataset_ids = [self.dataset_ids]
        self.dataset_ids = [str(d) for d in self.dataset_ids]
        for name in ("ref_min_score", "ref_max_score"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, float(value))
        self.validate()

    # -- basic properties ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def __repr__(self) -> str:
        return (
            f"TransitionDataset(transitions={len(self)}, episodes={len(self.episode_returns)}, "
            f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, env_id={self.env_id!r}, "
            f"dataset_ids={self.dataset_ids!r}, terminals={int(self.terminals.sum())})"
        )

    # -- statistics ----------------------------------------------------------------------------

    def observation_stats(self, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and standard deviation of ``observations`` (float32); std floored at ``eps``."""
        if not (eps >= 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a finite number >= 0, got {eps}")
        obs = self.observations.astype(np.float64)
        mean = obs.mean(axis=0)
        std = np.maximum(obs.std(axis=0), eps)
        return mean.astype(np.float32), std.astype(np.float32)

    def reward_scale(self) -> float:
        """``1000 / (max episode return - min episode return)``, the IQL locomotion reward scaling.

        Returns 1.0 with a ``UserWarning`` when the episode returns have fewer than 2 distinct values.
        """
        returns = self.episode_returns
        if np.unique(returns).size < 2:
            warnings.warn(
                f"reward_scale: the dataset has {returns.size} episode(s) with fewer than 2 distinct returns; "
                "cannot scale rewards by the return range, using 1.0",
                UserWarning,
                stacklevel=2,
            )
            return 1.0
        return float(1000.0 / (float(returns.max()) - float(returns.min())))

    def normalized_actions(self) -> np.ndarray:
        """Actions mapped affinely from ``[action_low, action_high]`` to ``[-1, 1]`` (float32)."""
        low = self.action_low.astype(np.float64)
        span = self.action_high.astype(np.float64) - low
        out = 2.0 * (self.actions.astype(np.float64) - low) / span - 1.0
        np.clip(out, -1.0, 1.0, out=out)
        return out.astype(np.float32)

    # -- derived datasets ----------------------------------------------------------------------

    def subset(self, fraction: float, seed: int) -> "TransitionDataset":
        """Keep a random ``fraction`` of the transitions (at least one), chosen with ``seed``.

        For the paper's "1% of the labels" setting. The kept transitions stay in their original
        order. ``episode_returns`` are those of the full dataset (so :meth:`reward_scale` does not
        change); ``episode_ends`` becomes ``None`` unless everything is kept.
        Raises ``ValueError`` unless ``0 < fraction <= 1``.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)):
            raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
        fraction = float(fraction)
        if not (0.0 < fraction <= 1.0):
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        n = len(self)
        keep = min(n, max(1, int(round(fraction * n))))
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(n, size=keep, replace=False))
        return TransitionDataset(
            observations=self.observations[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            next_observations=self.next_observations[index],
            terminals=self.terminals[index],
            episode_returns=self.episode_returns.copy(),
            action_low=self.action_low.copy(),
            action_high=self.action_high.copy(),
            env_id=self.env_id,
            dataset_ids=list(self.dataset_ids),
            ref_min_score=self.ref_min_score,
            ref_max_score=self.ref_max_score,
            episode_ends=self.episode_ends.copy() if keep == n and self.episode_ends is not None else None,
        )

    # -- checks --------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`DataValidationError` if any invariant of the dataset does not hold."""
        obs = self.observations
        if obs.ndim != 2 or obs.shape[0] < 1 or obs.shape[1] < 1:
            raise DataValidationError(
                f"observations has shape {obs.shape}; expected (N, obs_dim) with N >= 1 and obs_dim >= 1"
            )
        n, obs_dim = obs.shape
        act = self.actions
        if act.ndim != 2 or act.shape[0] != n or act.shape[1] < 1:
            raise DataValidationError(f"actions has shape {act.shape}; expected ({n}, act_dim) with act_dim >= 1")
        act_dim = act.shape[1]
        expected = {
            "rewards": (n,),
            "next_observations": (n, obs_dim),
            "terminals": (n,),
            "action_low": (act_dim,),
            "action_high": (act_dim,),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if value.shape != shape:
                raise DataValidationError(f"{name} has shape {value.shape}; expected {shape}")
        for name in NPZ_REQUIRED_KEYS:
            value = getattr(self, name)
            if value.dtype != np.float32:
                raise DataValidationError(f"{name} has dtype {value.dtype}; expected float32")
            _check_finite(name, value)
        _check_binary("terminals", self.terminals)
        low, high = self.action_low, self.action_high
        if np.any(low >= high):
            dim = int(np.flatnonzero(low >= high)[0])
            raise DataValidationError(
                f"action_low must be below action_high in every dimension; dimension {dim} has "
                f"low {low[dim]} and high {high[dim]}"
            )
        outside = (act < low) | (act > high)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise DataValidationError(
                f"actions row {row} dimension {col} is {act[row, col]}, outside the action space "
                f"[{low[col]}, {high[col]}]"
            )
        returns = self.episode_returns
        if returns.ndim != 1 or returns.size < 1:
            raise DataValidationError(f"episode_returns has shape {returns.shape}; expected (E,) with E >= 1")
        if returns.dtype != np.float64:
            raise DataValidationError(f"episode_returns has dtype {returns.dtype}; expected float64")
        _check_finite("episode_returns", returns)
        if self.episode_ends is not None:
            _check_episode_ends(self.episode_ends, n)
            if self.episode_ends[-1] != n - 1:
                raise DataValidationError(
                    f"episode_ends must end with the last transition index {n - 1}, got {self.episode_ends[-1]}"
                )
            if self.episode_ends.size != returns.size:
                raise DataValidationError(
                    f"episode_ends has {self.episode_ends.size} episodes but episode_returns has {returns.size}"
                )
        if (self.ref_min_score is None) != (self.ref_max_score is None):
            raise DataValidationError(
                "give both ref_min_score and ref_max_score or neither, got "
                f"ref_min_score={self.ref_min_score}, ref_max_score={self.ref_max_score}"
            )
        if self.ref_min_score is not None:
            if not (math.isfinite(self.ref_min_score) and math.isfinite(self.ref_max_score)):
                raise DataValidationError(
                    f"reference scores must be finite, got {self.ref_min_score}, {self.ref_max_score}"
                )
            if self.ref_max_score <= self.ref_min_score:
                raise DataValidationError(
                    f"ref_max_score ({self.ref_max_score}) must be above ref_min_score ({self.ref_min_score})"
                )


# ----------------------------------------------------------------------------------------------
# Minari
# ----------------------------------------------------------------------------------------------


def load_minari(
    dataset_ids: str | Sequence[str], *, download: bool = False, clip_tolerance: float = 1e-4
) -> TransitionDataset:
    """Load one Minari dataset, or several trained on together, as transitions.

    Each id is opened with ``minari.load_dataset(id, download=download)``; datasets under
    ``MINARI_DATASETS_PATH`` (or ``~/.minari/datasets``) need no network. Several ids must
    describe the same task: same observation and action spaces, same env id and the same
    reference scores where given (else :class:`DataValidationError`); their transitions are
    concatenated in the order given.

    Episode ``t`` of length ``T`` gives transitions ``(obs[t], action[t], reward[t], obs[t+1],
    terminations[t])`` for ``t < T``; truncations are never terminal. Every episode is checked and
    errors name the dataset id, the episode id and the field. Actions overshooting the action
    space by at most ``clip_tolerance`` are clipped onto it; larger overshoots are errors.
    Episodes without steps are skipped (with a warning).
    """
    ids = [dataset_ids] if isinstance(dataset_ids, str) else list(dataset_ids)
    if not ids:
        raise ValueError("load_minari needs at least one dataset id")
    for dataset_id in ids:
        if not isinstance(dataset_id, str):
            raise TypeError(f"dataset ids must be strings, got {dataset_id!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"dataset ids are repeated: {ids}")
    _check_tolerance(clip_tolerance)

    import minari

    opened = []
    for dataset_id in ids:
        try:
            dataset = minari.load_dataset(dataset_id, download=download)
        except FileNotFoundError as err:
            root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets (MINARI_DATASETS_PATH is unset)")
            raise FileNotFoundError(
                f"Minari dataset {dataset_id!r} is not stored under {root}; set MINARI_DATASETS_PATH to the "
                f"folder that holds it, or pass download=True to fetch it ({err})"
            ) from err
        obs_space, act_space = _minari_spaces(dataset_id, dataset)
        ref_min, ref_max = _minari_ref_scores(dataset_id, dataset)
        opened.append((dataset_id, dataset, obs_space, act_space, _minari_env_id(dataset), ref_min, ref_max))

    first_id, _, first_obs, first_act, *_ = opened[0]
    for dataset_id, _, obs_space, act_space, *_ in opened[1:]:
        problems = []
        if obs_space.shape != first_obs.shape or not _same_bounds(obs_space, first_obs):
            problems.append(f"observation space {obs_space} != {first_obs}")
        if act_space.shape != first_act.shape or not _same_bounds(act_space, first_act):
            problems.append(
                f"action space {act_space} (low {act_space.low}, high {act_space.high}) != "
                f"{first_act} (low {first_act.low}, high {first_act.high})"
            )
        if problems:
            raise DataValidationError(
                f"datasets {first_id!r} and {dataset_id!r} cannot be combined: " + "; ".join(problems)
            )
    _agree("env_id", [(o[0], o[4]) for o in opened])
    _agree("reference scores", [(o[0], None if o[5] is None else (o[5], o[6])) for o in opened])

    parts = [
        _minari_transitions(dataset_id, dataset, obs_space, act_space, env_id, ref_min, ref_max, clip_tolerance)
        for dataset_id, dataset, obs_space, act_space, env_id, ref_min, ref_max in opened
    ]
    return parts[0] if len(parts) == 1 else concatenate(parts)


def _minari_spaces(dataset_id: str, dataset: Any) -> tuple[Any, Any]:
    from eda_policy.spaces import check_box_spaces

    obs_space, act_space = dataset.observation_space, dataset.action_space
    try:
        check_box_spaces(obs_space, act_space)
    except ValueError as err:
        raise DataValidationError(f"dataset {dataset_id!r}: {err}") from err
    return obs_space, act_space


def _same_bounds(a: Any, b: Any) -> bool:
    return bool(np.allclose(a.low, b.low, atol=1e-6) and np.allclose(a.high, b.high, atol=1e-6))


def _minari_env_id(dataset: Any) -> str | None:
    spec = dataset.env_spec
    if spec is not None:
        return str(spec.id)
    try:  # no collection env recorded: fall back on the evaluation env, if the dataset names one
        env = dataset.recover_environment(eval_env=True)
    except Exception:
        return None
    try:
        return None if env.spec is None else str(env.spec.id)
    finally:
        env.close()


def _minari_ref_scores(dataset_id: str, dataset: Any) -> tuple[float | None, float | None]:
    metadata = dataset.storage.metadata
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if ref_min is None or ref_max is None:
        return None, None
    try:
        return float(ref_min), float(ref_max)
    except (TypeError, ValueError) as err:
        raise DataValidationError(
            f"dataset {dataset_id!r}: metadata ref_min_score/ref_max_score are not numbers ({ref_min!r}, {ref_max!r})"
        ) from err


def _minari_transitions(
    dataset_id: str,
    dataset: Any,
    obs_space: Any,
    act_space: Any,
    env_id: str | None,
    ref_min: float | None,
    ref_max: float | None,
    clip_tolerance: float,
) -> TransitionDataset:
    obs_dim, act_dim = obs_space.shape[0], act_space.shape[0]
    obs_parts, next_parts, act_parts, rew_parts, term_parts = [], [], [], [], []
    episode_ids, lengths, returns = [], [], []
    empty = []

    def fail(episode_id: int, name: str, message: str) -> DataValidationError:
        return DataValidationError(f"dataset {dataset_id!r}, episode {episode_id}, field {name!r}: {message}")

    for episode in dataset.iterate_episodes():
        eid = int(episode.id)
        rewards = episode.rewards
        fields = {
            "observations": episode.observations,
            "actions": episode.actions,
            "rewards": rewards,
            "terminations": episode.terminations,
            "truncations": episode.truncations,
        }
        for name, value in fields.items():
            if not isinstance(value, np.ndarray):
                raise fail(eid, name, f"is a {type(value).__name__}, expected a numpy array")
            kinds = "biuf" if name in ("terminations", "truncations") else "iuf"
            if value.dtype.kind not in kinds:
                raise fail(eid, name, f"has dtype {value.dtype}, expected numbers")
        if rewards.ndim != 1:
            raise fail(eid, "rewards", f"has shape {rewards.shape}, expected (T,)")
        steps = rewards.shape[0]
        expected = {
            "observations": (steps + 1, obs_dim),
            "actions": (steps, act_dim),
            "terminations": (steps,),
            "truncations": (steps,),
        }
        for name, shape in expected.items():
            if fields[name].shape != shape:
                raise fail(
                    eid, name, f"has shape {fields[name].shape}, expected {shape} for an episode of {steps} steps"
                )
        if steps == 0:
            empty.append(eid)
            continue
        terminations = episode.terminations.astype(bool)
        truncations = episode.truncations.astype(bool)
        for name, flags in (("terminations", terminations), ("truncations", truncations)):
            if flags[:-1].any():
                step = int(np.flatnonzero(flags[:-1])[0])
                raise fail(eid, name, f"is set at step {step}, before the episode's last step {steps - 1}")
        obs = episode.observations
        obs_parts.append(obs[:-1])
        next_parts.append(obs[1:])
        act_parts.append(episode.actions)
        rew_parts.append(rewards)
        term_parts.append(terminations)
        episode_ids.append(eid)
        lengths.append(steps)
        returns.append(float(np.sum(rewards, dtype=np.float64)))

    if empty:
        warnings.warn(
            f"dataset {dataset_id!r}: skipped {len(empty)} episode(s) without steps (ids {empty[:10]})",
            UserWarning,
            stacklevel=3,
        )
    if not lengths:
        raise DataValidationError(f"dataset {dataset_id!r} has no transitions")

    observations = np.concatenate(obs_parts, dtype=np.float32)
    next_observations = np.concatenate(next_parts, dtype=np.float32)
    actions = np.concatenate(act_parts, dtype=np.float32)
    rewards = np.concatenate(rew_parts, dtype=np.float32)
    terminals = np.concatenate(term_parts).astype(np.float32)
    ends = np.cumsum(lengths) - 1
    starts = ends - np.asarray(lengths) + 1

    def locate(row: int) -> tuple[int, int]:
        index = int(np.searchsorted(ends, row))
        return episode_ids[index], int(row - starts[index])

    for name, array, offset in (
        ("observations", observations, 0),
        ("observations", next_observations, 1),
        ("actions", actions, 0),
        ("rewards", rewards, 0),
    ):
        bad = _first_nonfinite(array)
        if bad is not None:
            eid, step = locate(bad[0])
            where = f"step {step + offset}" + ("" if bad[1] is None else f", column {bad[1]}")
            raise fail(eid, name, f"contains NaN or inf (or a value beyond float32 range) at {where}")

    low = np.asarray(act_space.low, dtype=np.float32)
    high = np.asarray(act_space.high, dtype=np.float32)
    bad = _first_out_of_bounds(actions, low, high, clip_tolerance)
    if bad is not None:
        row, col = bad
        eid, step = locate(row)
        raise fail(
            eid,
            "actions",
            f"step {step} dimension {col} is {actions[row, col]}, outside the action space "
            f"[{low[col]}, {high[col]}] by more than clip_tolerance={clip_tolerance}",
        )
    np.clip(actions, low, high, out=actions)

    return TransitionDataset(
        observations=observations,
        actions=actions,
        rewards=rewards,
        next_observations=next_observations,
        terminals=terminals,
        episode_returns=np.asarray(returns, dtype=np.float64),
        action_low=low,
        action_high=high,
        env_id=env_id,
        dataset_ids=[dataset_id],
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        episode_ends=ends.astype(np.int64),
    )


# ----------------------------------------------------------------------------------------------
# Arrays and npz files
# ----------------------------------------------------------------------------------------------


def from_arrays(
    observations: Any,
    actions: Any,
    rewards: Any,
    next_observations: Any,
    terminals: Any,
    *,
    action_low: Any,
    action_high: Any,
    episode_ends: Any = None,
    timeouts: Any = None,
    env_id: str | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    clip_tolerance: float = 1e-4,
    episode_returns: Any = None,
    dataset_ids: Sequence[str] | None = None,
) -> TransitionDataset:
    """Build a :class:`TransitionDataset` from a user's own numpy arrays (anything ``np.asarray`` reads).

    Shapes: ``observations`` and ``next_observations`` (N, obs_dim); ``actions`` (N, act_dim);
    ``rewards``, ``terminals`` and ``timeouts`` (N,) or (N, 1); ``action_low``/``action_high``
    (act_dim,) or a scalar for every dimension. ``terminals``/``timeouts`` hold 0/1 or booleans;
    ``terminals`` must mark only true terminations, never time limits (those go in ``timeouts``).

    Episode boundaries (for ``episode_returns`` and so :meth:`~TransitionDataset.reward_scale`):
    ``episode_ends`` (index of the last transition of each episode, increasing) if given, else
    every row where ``terminals`` or ``timeouts`` is set; rows after the last boundary form one
    more (incomplete) episode. With ``episode_ends`` given, a terminal or timeout anywhere but at
    an episode end is an error.

    ``episode_returns`` and ``dataset_ids`` (additions used by :func:`load_npz`): given returns
    are used as they are instead of being summed from ``rewards``; then ``episode_ends``, if also
    given, must have one entry per return, and if not given stays unknown (``None``).
    """
    _check_tolerance(clip_tolerance)
    obs = _numeric("observations", observations)
    if obs.ndim != 2 or obs.shape[0] < 1 or obs.shape[1] < 1:
        raise DataValidationError(
            f"observations has shape {obs.shape}; expected (N, obs_dim), a 2-D array with N >= 1 rows"
        )
    n, obs_dim = obs.shape
    act = _numeric("actions", actions)
    if act.ndim != 2 or act.shape[0] != n or act.shape[1] < 1:
        raise DataValidationError(
            f"actions has shape {act.shape}; expected ({n}, act_dim), one row per observation"
        )
    act_dim = act.shape[1]
    nxt = _numeric("next_observations", next_observations)
    if nxt.shape != (n, obs_dim):
        raise DataValidationError(
            f"next_observations has shape {nxt.shape}; expected {(n, obs_dim)}, the shape of observations"
        )
    rew = _column("rewards", _numeric("rewards", rewards), n)
    term = _column("terminals", _numeric("terminals", terminals, allow_bool=True), n)
    tout = None if timeouts is None else _column("timeouts", _numeric("timeouts", timeouts, allow_bool=True), n)
    low = _bound("action_low", action_low, act_dim)
    high = _bound("action_high", action_high, act_dim)

    for name, value in (
        ("observations", obs),
        ("actions", act),
        ("rewards", rew),
        ("next_observations", nxt),
        ("action_low", low),
        ("action_high", high),
    ):
        _check_finite(name, value.astype(np.float32) if value.dtype.kind == "f" else value)
    _check_binary("terminals", term)
    if tout is not None:
        _check_binary("timeouts", tout)
    if np.any(low >= high):
        dim = int(np.flatnonzero(low >= high)[0])
        raise DataValidationError(
            f"action_low must be below action_high in every dimension; dimension {dim} has low {low[dim]} "
            f"and high {high[dim]}"
        )

    actions32 = act.astype(np.float32)
    low32, high32 = low.astype(np.float32), high.astype(np.float32)
    bad = _first_out_of_bounds(actions32, low32, high32, clip_tolerance)
    if bad is not None:
        row, col = bad
        raise DataValidationError(
            f"actions row {row} dimension {col} is {actions32[row, col]}, outside [action_low, action_high] = "
            f"[{low32[col]}, {high32[col]}] by more than clip_tolerance={clip_tolerance}"
        )
    np.clip(actions32, low32, high32, out=actions32)

    flags = term.astype(bool) if tout is None else (term.astype(bool) | tout.astype(bool))
    if episode_ends is not None:
        ends = np.asarray(episode_ends)
        if ends.ndim != 1 or ends.dtype.kind not in "iu":
            raise DataValidationError(
                f"episode_ends has shape {ends.shape} and dtype {ends.dtype}; expected a 1-D integer array"
            )
        ends = ends.astype(np.int64)
        _check_episode_ends(ends, n)
        if ends.size == 0 or ends[-1] != n - 1:
            ends = np.append(ends, n - 1)
        stray = flags.copy()
        stray[ends] = False
        if stray.any():
            row = int(np.flatnonzero(stray)[0])
            which = "terminals" if term[row] else "timeouts"
            raise DataValidationError(
                f"{which} is set at row {row}, which is not in episode_ends; an episode ends at its terminal "
                "or time-out step"
            )
    else:
        ends = np.flatnonzero(flags).astype(np.int64)
        if ends.size == 0 or ends[-1] != n - 1:
            ends = np.append(ends, n - 1)

    if episode_returns is not None:
        returns = _numeric("episode_returns", episode_returns).astype(np.float64)
        if returns.ndim != 1 or returns.size < 1:
            raise DataValidationError(f"episode_returns has shape {returns.shape}; expected (E,) with E >= 1")
        _check_finite("episode_returns", returns)
        if episode_ends is None:
            ends = None
        elif ends.size != returns.size:
            raise DataValidationError(
                f"episode_ends describes {ends.size} episodes but episode_returns has {returns.size} values"
            )
    else:
        starts = np.concatenate(([0], ends[:-1] + 1))
        returns = np.add.reduceat(rew.astype(np.float64), starts)

    return TransitionDataset(
        observations=obs.astype(np.float32),
        actions=actions32,
        rewards=rew.astype(np.float32),
        next_observations=nxt.astype(np.float32),
        terminals=term.astype(np.float32),
        episode_returns=returns,
        action_low=low32,
        action_high=high32,
        env_id=env_id,
        dataset_ids=list(dataset_ids) if dataset_ids is not None else [],
        ref_min_score=ref_min_score,
        ref_max_score=ref_max_score,
        episode_ends=ends,
    )


def load_npz(path: str | os.PathLike, **kwargs: Any) -> TransitionDataset:
    """Load a dataset from a ``.npz`` archive (read with ``allow_pickle=False``).

    Required keys: ``observations, actions, rewards, next_observations, terminals, action_low,
    action_high``; optional: ``episode_ends, timeouts`` and, as written by :func:`save_npz`,
    ``episode_returns, env_id, dataset_ids, ref_min_score, ref_max_score``. Other keys are
    ignored. ``kwargs`` go to :func:`from_arrays` and take precedence over the archive's values.
    """
    path = Path(path)
    loaded = np.load(path, allow_pickle=False)
    if not hasattr(loaded, "files"):
        raise DataValidationError(f"{path} is a single .npy array, not a .npz archive of named arrays")
    with loaded as archive:
        present = list(archive.files)
        missing = [key for key in NPZ_REQUIRED_KEYS if key not in present]
        if missing:
            raise DataValidationError(
                f"{path} lacks required arrays {missing}; it has {sorted(present)}; required: "
                f"{list(NPZ_REQUIRED_KEYS)}; optional: {list(NPZ_OPTIONAL_KEYS)}"
            )
        arrays = {}
        for key in NPZ_REQUIRED_KEYS + NPZ_OPTIONAL_KEYS:
            if key in present:
                try:
                    arrays[key] = archive[key]
                except ValueError as err:
                    raise DataValidationError(
                        f"{path}: array {key!r} could not be read without pickle ({err})"
                    ) from err

    passed_through = ("action_low", "action_high", "episode_ends", "timeouts", "episode_returns")
    args: dict[str, Any] = {key: arrays[key] for key in passed_through if key in arrays}
    if "env_id" in arrays:
        args["env_id"] = _scalar_str("env_id", arrays["env_id"], path)
    if "dataset_ids" in arrays:
        ids = arrays["dataset_ids"]
        if ids.dtype.kind != "U":
            raise DataValidationError(f"{path}: dataset_ids has dtype {ids.dtype}; expected strings")
        args["dataset_ids"] = [str(x) for x in ids.ravel()]
    for key in ("ref_min_score", "ref_max_score"):
        if key in arrays:
            value = arrays[key]
            if value.size != 1 or value.dtype.kind not in "iuf":
                raise DataValidationError(
                    f"{path}: {key} must be one number, got shape {value.shape} dtype {value.dtype}"
                )
            args[key] = float(value.reshape(()))
    args.update(kwargs)
    return from_arrays(
        arrays["observations"],
        arrays["actions"],
        arrays["rewards"],
        arrays["next_observations"],
        arrays["terminals"],
        **args,
    )


def save_npz(dataset: TransitionDataset, path: str | os.PathLike) -> None:
    """Write ``dataset`` to ``path`` exactly (no ``.npz`` suffix is added) so that :func:`load_npz` restores it."""
    dataset.validate()
    payload: dict[str, np.ndarray] = {
        "observations": dataset.observations,
        "actions": dataset.actions,
        "rewards": dataset.rewards,
        "next_observations": dataset.next_observations,
        "terminals": dataset.terminals,
        "action_low": dataset.action_low,
        "action_high": dataset.action_high,
        "episode_returns": dataset.episode_returns,
    }
    if dataset.episode_ends is not None:
        payload["episode_ends"] = dataset.episode_ends
    if dataset.env_id is not None:
        payload["env_id"] = np.array(dataset.env_id)
    if dataset.dataset_ids:
        payload["dataset_ids"] = np.array(dataset.dataset_ids, dtype=np.str_)
    if dataset.ref_min_score is not None and dataset.ref_max_score is not None:
        payload["ref_min_score"] = np.array(dataset.ref_min_score, dtype=np.float64)
        payload["ref_max_score"] = np.array(dataset.ref_max_score, dtype=np.float64)
    with open(Path(path), "wb") as file:
        np.savez(file, **payload)


# ----------------------------------------------------------------------------------------------
# Combining
# ----------------------------------------------------------------------------------------------


def concatenate(datasets: Sequence[TransitionDataset]) -> TransitionDataset:
    """Join datasets of the same task (same dims and action bounds; env id and reference scores
    must agree where known). ``episode_ends`` is kept only if every part knows it."""
    parts = list(datasets)
    if not parts:
        raise ValueError("concatenate needs at least one dataset")
    for part in parts:
        if not isinstance(part, TransitionDataset):
            raise TypeError(f"concatenate takes TransitionDataset objects, got {type(part).__name__}")
    labels = [", ".join(p.dataset_ids) or f"dataset #{i}" for i, p in enumerate(parts)]
    first = parts[0]
    for label, part in zip(labels[1:], parts[1:]):
        problems = []
        if part.obs_dim != first.obs_dim:
            problems.append(f"obs_dim {part.obs_dim} != {first.obs_dim}")
        if part.act_dim != first.act_dim:
            problems.append(f"act_dim {part.act_dim} != {first.act_dim}")
        elif not (
            np.allclose(part.action_low, first.action_low, atol=1e-6)
            and np.allclose(part.action_high, first.action_high, atol=1e-6)
        ):
            problems.append(
                f"action bounds [{part.action_low}, {part.action_high}] != [{first.action_low}, {first.action_high}]"
            )
        if problems:
            raise DataValidationError(f"{label} cannot be joined to {labels[0]}: " + "; ".join(problems))
    env_id = _agree("env_id", [(label, p.env_id) for label, p in zip(labels, parts)])
    ref = _agree(
        "reference scores",
        [
            (label, None if p.ref_min_score is None else (p.ref_min_score, p.ref_max_score))
            for label, p in zip(labels, parts)
        ],
    )
    if all(p.episode_ends is not None for p in parts):
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        episode_ends = np.concatenate([p.episode_ends + off for p, off in zip(parts, offsets)])
    else:
        episode_ends = None
    return TransitionDataset(
        observations=np.concatenate([p.observations for p in parts]),
        actions=np.concatenate([p.actions for p in parts]),
        rewards=np.concatenate([p.rewards for p in parts]),
        next_observations=np.concatenate([p.next_observations for p in parts]),
        terminals=np.concatenate([p.terminals for p in parts]),
        episode_returns=np.concatenate([p.episode_returns for p in parts]),
        action_low=first.action_low.copy(),
        action_high=first.action_high.copy(),
        env_id=env_id,
        dataset_ids=[d for p in parts for d in p.dataset_ids],
        ref_min_score=None if ref is None else ref[0],
        ref_max_score=None if ref is None else ref[1],
        episode_ends=episode_ends,
    )


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _numeric(name: str, value: Any, *, allow_bool: bool = False) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested sequences
        raise DataValidationError(f"{name} could not be read as an array ({err})") from err
    kinds = "biuf" if allow_bool else "iuf"
    if array.dtype.kind not in kinds:
        wanted = "numbers or booleans" if allow_bool else "real numbers (float or integer)"
        raise DataValidationError(f"{name} has dtype {array.dtype}; expected {wanted}")
    return array


def _column(name: str, array: np.ndarray, n: int) -> np.ndarray:
    if array.shape == (n, 1):
        return array[:, 0]
    if array.shape != (n,):
        raise DataValidationError(f"{name} has shape {array.shape}; expected ({n},) (or ({n}, 1)), one value per row")
    return array


def _bound(name: str, value: Any, act_dim: int) -> np.ndarray:
    array = _numeric(name, value)
    if array.ndim == 0:
        return np.full(act_dim, array, dtype=np.float64)
    if array.shape != (act_dim,):
        raise DataValidationError(
            f"{name} has shape {array.shape}; expected ({act_dim},), one bound per action dimension"
        )
    return array.astype(np.float64)


def _first_nonfinite(array: np.ndarray) -> tuple[int, int | None] | None:
    finite = np.isfinite(array)
    if finite.all():
        return None
    if array.ndim == 1:
        return int(np.flatnonzero(~finite)[0]), None
    row, col = np.argwhere(~finite)[0]
    return int(row), int(col)


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.dtype.kind != "f":
        return
    bad = _first_nonfinite(array)
    if bad is not None:
        row, col = bad
        where = "" if array.ndim == 0 else f" at row {row}" + ("" if col is None else f", column {col}")
        raise DataValidationError(f"{name} contains NaN or inf (or a value beyond float32 range){where}")


def _check_binary(name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "b":
        return
    bad = (array != 0) & (array != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError(f"{name} must hold only 0 and 1; row {row} is {array[row]}")


def _first_out_of_bounds(
    actions: np.ndarray, low: np.ndarray, high: np.ndarray, tolerance: float
) -> tuple[int, int] | None:
    excess = np.maximum(low - actions, actions - high)
    bad = excess > tolerance
    if not bad.any():
        return None
    row, col = np.argwhere(bad)[0]
    return int(row), int(col)


def _check_episode_ends(ends: np.ndarray, n: int) -> None:
    if ends.ndim != 1:
        raise DataValidationError(f"episode_ends has shape {ends.shape}; expected a 1-D array")
    if ends.size and (ends.min() < 0 or ends.max() > n - 1):
        raise DataValidationError(
            f"episode_ends must lie in [0, {n - 1}], got values from {ends.min()} to {ends.max()}"
        )
    if ends.size > 1 and np.any(np.diff(ends) <= 0):
        i = int(np.flatnonzero(np.diff(ends) <= 0)[0])
        raise DataValidationError(
            f"episode_ends must be strictly increasing; entry {i + 1} ({ends[i + 1]}) follows {ends[i]}"
        )


def _check_tolerance(clip_tolerance: float) -> None:
    if not (isinstance(clip_tolerance, (int, float, np.integer, np.floating)) and 0 <= clip_tolerance < math.inf):
        raise ValueError(f"clip_tolerance must be a finite number >= 0, got {clip_tolerance!r}")


def _agree(what: str, labelled: list[tuple[str, Any]]) -> Any:
    """Return the common known value of ``what``; None entries are unknown and ignored."""
    known = [(label, value) for label, value in labelled if value is not None]
    if not known:
        return None
    first_label, first = known[0]
    for label, value in known[1:]:
        same = value == first if isinstance(first, str) else np.allclose(value, first, rtol=1e-9, atol=1e-9)
        if not same:
            raise DataValidationError(f"{what} differ: {first_label} has {first!r}, {label} has {value!r}")
    return first


def _scalar_str(name: str, value: np.ndarray, path: Path) -> str:
    if value.dtype.kind != "U" or value.size != 1:
        raise DataValidationError(f"{path}: {name} must be one string, got shape {value.shape} dtype {value.dtype}")
    return str(value.reshape(()))
