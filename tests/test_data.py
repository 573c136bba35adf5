"""Tests of training/data.py on real (tiny) Minari datasets, numpy arrays and npz files. No mocks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from minari_fixtures import (  # noqa: E402
    HOPPER_REF,
    TINY_OVERSHOOT,
    WALKER2D_REF,
    make_tiny_dataset,
    make_tiny_hopper_dataset,
)

from training.data import (  # noqa: E402
    DataValidationError,
    TransitionDataset,
    concatenate,
    from_arrays,
    load_minari,
    load_npz,
    save_npz,
)

# shared/ sits beside the repository (as on developer machines and in CI).
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A clean tiny Hopper dataset plus its raw episodes as Minari returns them.

    MINARI_DATASETS_PATH points at the dataset's root for the whole module; tests that make other
    datasets set their own root with ``monkeypatch`` (restored afterwards).
    """
    import minari

    root = tmp_path_factory.mktemp("minari_root")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        dataset_id = make_tiny_hopper_dataset(root)
        episodes = list(minari.load_dataset(dataset_id).iterate_episodes())
        yield {"root": root, "id": dataset_id, "episodes": episodes}


@pytest.fixture
def fresh_root(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _arrays(n=10, obs_dim=3, act_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        observations=rng.normal(size=(n, obs_dim)),
        actions=rng.uniform(-1, 1, size=(n, act_dim)),
        rewards=rng.normal(size=n),
        next_observations=rng.normal(size=(n, obs_dim)),
        terminals=np.zeros(n),
    )


def _from(arrays, **kwargs):
    kwargs.setdefault("action_low", -np.ones(arrays["actions"].shape[1]))
    kwargs.setdefault("action_high", np.ones(arrays["actions"].shape[1]))
    return from_arrays(
        arrays["observations"],
        arrays["actions"],
        arrays["rewards"],
        arrays["next_observations"],
        arrays["terminals"],
        **kwargs,
    )


# ----------------------------------------------------------------------------------------------
# Minari: the fixture itself and faithful conversion
# ----------------------------------------------------------------------------------------------


def test_fixture_has_both_episode_endings(tiny):
    endings = [(bool(ep.terminations[-1]), bool(ep.truncations[-1])) for ep in tiny["episodes"]]
    assert (True, False) in endings, "fixture must contain a terminated episode"
    assert (False, True) in endings, "fixture must contain a time-limit truncated episode"
    assert Path(tiny["root"], tiny["id"], "data", "main_data.hdf5").is_file()


def test_load_counts_alignment_and_metadata(tiny):
    data = load_minari(tiny["id"])
    episodes = tiny["episodes"]
    lengths = [len(ep) for ep in episodes]
    assert len(data) == sum(lengths)
    assert data.obs_dim == 11 and data.act_dim == 3
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "action_low", "action_high"):
        assert getattr(data, name).dtype == np.float32, name
    assert data.env_id == "Hopper-v5"
    assert data.dataset_ids == [tiny["id"]]
    assert data.ref_min_score == pytest.approx(HOPPER_REF[0])
    assert data.ref_max_score == pytest.approx(HOPPER_REF[1])
    np.testing.assert_array_equal(data.action_low, -np.ones(3, np.float32))
    np.testing.assert_array_equal(data.action_high, np.ones(3, np.float32))
    np.testing.assert_array_equal(data.episode_ends, np.cumsum(lengths) - 1)

    start = 0
    for ep in episodes:
        stop = start + len(ep)
        obs = ep.observations.astype(np.float32)
        np.testing.assert_array_equal(data.observations[start:stop], obs[:-1])
        np.testing.assert_array_equal(data.next_observations[start:stop], obs[1:])
        np.testing.assert_array_equal(data.actions[start:stop], ep.actions)
        np.testing.assert_allclose(data.rewards[start:stop], ep.rewards, rtol=1e-6)
        # within an episode, s' of one transition is s of the next
        np.testing.assert_array_equal(data.next_observations[start : stop - 1], data.observations[start + 1 : stop])
        start = stop
    # across an episode boundary it is not: the last s' is the episode's final observation
    first_end = lengths[0] - 1
    assert not np.array_equal(data.next_observations[first_end], data.observations[first_end + 1])


def test_terminal_is_termination_only(tiny):
    data = load_minari(tiny["id"])
    expected = np.concatenate([ep.terminations for ep in tiny["episodes"]]).astype(np.float32)
    np.testing.assert_array_equal(data.terminals, expected)
    ends = data.episode_ends
    for ep, end in zip(tiny["episodes"], ends):
        if ep.truncations[-1]:
            assert data.terminals[end] == 0.0, "a time-limit truncation must not be terminal"
        if ep.terminations[-1]:
            assert data.terminals[end] == 1.0
    assert data.terminals.sum() == sum(bool(ep.terminations[-1]) for ep in tiny["episodes"]) >= 1


def test_episode_returns_and_reward_scale(tiny):
    data = load_minari(tiny["id"])
    raw = np.array([np.sum(ep.rewards, dtype=np.float64) for ep in tiny["episodes"]])
    assert data.episode_returns.dtype == np.float64
    np.testing.assert_allclose(data.episode_returns, raw, rtol=1e-12)
    assert data.reward_scale() == pytest.approx(1000.0 / (raw.max() - raw.min()))


def test_observation_stats(tiny):
    data = load_minari(tiny["id"])
    mean, std = data.observation_stats()
    assert mean.dtype == np.float32 and std.dtype == np.float32
    assert mean.shape == std.shape == (11,)
    np.testing.assert_allclose(mean, data.observations.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.maximum(data.observations.astype(np.float64).std(0), 1e-3), rtol=1e-5)

    arrays = _arrays()
    arrays["observations"][:, 1] = 4.0  # a constant feature: std floored at eps
    mean, std = _from(arrays).observation_stats(eps=0.25)
    assert mean[1] == pytest.approx(4.0)
    assert std[1] == pytest.approx(0.25)
    assert std[0] == pytest.approx(arrays["observations"][:, 0].std(), rel=1e-5)


def test_reward_scale_falls_back_with_one_distinct_return():
    arrays = _arrays(n=6)
    arrays["rewards"] = np.ones(6)
    data = _from(arrays, episode_ends=[2, 5])  # two episodes, both return 3.0
    np.testing.assert_array_equal(data.episode_returns, [3.0, 3.0])
    with pytest.warns(UserWarning, match="distinct"):
        assert data.reward_scale() == 1.0


def test_subset_is_seeded_and_sized(tiny):
    data = load_minari(tiny["id"])
    n = len(data)
    part = data.subset(0.25, seed=3)
    assert len(part) == round(0.25 * n)
    again = data.subset(0.25, seed=3)
    np.testing.assert_array_equal(part.observations, again.observations)
    other = data.subset(0.25, seed=4)
    assert not np.array_equal(part.observations, other.observations)
    # kept rows are whole original transitions, in their original order
    index = [int(np.flatnonzero((data.observations == row).all(1))[0]) for row in part.observations]
    assert index == sorted(index) and len(set(index)) == len(index)
    np.testing.assert_array_equal(part.actions, data.actions[index])
    np.testing.assert_array_equal(part.next_observations, data.next_observations[index])
    np.testing.assert_array_equal(part.terminals, data.terminals[index])
    # reward scaling stays that of the full data; at least one transition is kept
    assert part.reward_scale() == data.reward_scale()
    assert len(data.subset(1e-9, seed=0)) == 1
    assert len(data.subset(1.0, seed=0)) == n
    for bad in (0, 0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            data.subset(bad, seed=0)


def test_normalized_actions():
    arrays = _arrays(n=3, act_dim=2)
    arrays["actions"] = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, 0.25]])
    data = _from(arrays, action_low=[-2.0, 0.0], action_high=[2.0, 1.0])
    np.testing.assert_allclose(data.normalized_actions(), [[-1, -1], [1, 1], [0, -0.5]], atol=1e-6)
    assert data.normalized_actions().dtype == np.float32
    np.testing.assert_array_equal(data.actions[1], [2.0, 1.0])  # env units are kept


# ----------------------------------------------------------------------------------------------
# Minari: several ids, mismatches, corruption
# ----------------------------------------------------------------------------------------------


def test_load_two_ids_concatenates(fresh_root):
    first = make_tiny_hopper_dataset(fresh_root, "test/hopper/a-v0", num_episodes=2, seed=1)
    second = make_tiny_hopper_dataset(fresh_root, "test/hopper/b-v0", num_episodes=3, seed=2)
    a, b = load_minari(first), load_minari(second)
    both = load_minari([first, second])
    assert len(both) == len(a) + len(b)
    assert both.dataset_ids == [first, second]
    np.testing.assert_array_equal(both.observations, np.concatenate([a.observations, b.observations]))
    np.testing.assert_array_equal(both.terminals, np.concatenate([a.terminals, b.terminals]))
    np.testing.assert_array_equal(both.episode_returns, np.concatenate([a.episode_returns, b.episode_returns]))
    np.testing.assert_array_equal(both.episode_ends, np.concatenate([a.episode_ends, b.episode_ends + len(a)]))
    assert both.env_id == "Hopper-v5" and both.ref_max_score == pytest.approx(HOPPER_REF[1])


def test_load_mismatched_spaces_or_scores_fails(fresh_root):
    hopper = make_tiny_hopper_dataset(fresh_root, "test/hopper/a-v0", num_episodes=1)
    walker = make_tiny_dataset(
        fresh_root, "test/walker2d/a-v0", env_id="Walker2d-v5", ref_scores=WALKER2D_REF, num_episodes=1
    )
    with pytest.raises(DataValidationError, match="cannot be combined.*observation space"):
        load_minari([hopper, walker])
    other_refs = make_tiny_dataset(fresh_root, "test/hopper/b-v0", ref_scores=(0.0, 100.0), num_episodes=1)
    with pytest.raises(DataValidationError, match="reference scores differ"):
        load_minari([hopper, other_refs])
    with pytest.raises(ValueError, match="repeated"):
        load_minari([hopper, hopper])


def test_corrupt_nan_names_dataset_episode_and_field(fresh_root):
    dataset_id = make_tiny_hopper_dataset(fresh_root, "test/hopper/nan-v0", corrupt="nan")
    with pytest.raises(DataValidationError) as info:
        load_minari(dataset_id)
    message = str(info.value)
    assert "test/hopper/nan-v0" in message
    assert "episode 2" in message
    assert "'observations'" in message
    assert "step 2" in message and "column 3" in message


def test_corrupt_action_names_dataset_episode_and_field(fresh_root):
    dataset_id = make_tiny_hopper_dataset(fresh_root, "test/hopper/act-v0", corrupt="action_range")
    with pytest.raises(DataValidationError) as info:
        load_minari(dataset_id)
    message = str(info.value)
    assert "test/hopper/act-v0" in message and "episode 2" in message and "'actions'" in message
    assert "1.5" in message and "step 1" in message


@pytest.mark.parametrize(
    "corrupt, pattern",
    [
        ("mid_termination", r"episode 2, field 'terminations': is set at step 1, before the episode's last step"),
        ("short_actions", r"episode 2, field 'actions': has shape \(39, 3\), expected \(40, 3\)"),
    ],
)
def test_corrupt_episode_structure(fresh_root, corrupt, pattern):
    dataset_id = make_tiny_hopper_dataset(fresh_root, f"test/hopper/{corrupt.replace('_', '')}-v0", corrupt=corrupt)
    with pytest.raises(DataValidationError, match=pattern):
        load_minari(dataset_id)


def test_tiny_overshoot_is_clipped(fresh_root):
    dataset_id = make_tiny_hopper_dataset(fresh_root, "test/hopper/over-v0", corrupt="tiny_overshoot")
    data = load_minari(dataset_id)
    assert data.actions.max() == np.float32(1.0)
    row = data.episode_ends[1] + 1 + 1  # episode 2, step 1
    assert data.actions[row, 0] == np.float32(1.0)
    with pytest.raises(DataValidationError, match="'actions'"):
        load_minari(dataset_id, clip_tolerance=TINY_OVERSHOOT / 10)


def test_missing_dataset_says_where_it_looked(fresh_root):
    with pytest.raises(FileNotFoundError, match="MINARI_DATASETS_PATH|download=True"):
        load_minari("test/hopper/absent-v0")


@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="shared datasets not available")
def test_shared_hopper_medium(monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(SHARED_DATASETS))
    data = load_minari("eda/hopper/medium-v0")
    assert len(data) == 100190
    assert len(data.episode_returns) == 210
    assert data.env_id == "Hopper-v5"
    assert (data.ref_min_score, data.ref_max_score) == pytest.approx(HOPPER_REF)
    ends = data.episode_ends
    inside = np.setdiff1d(np.arange(len(data) - 1), ends)
    np.testing.assert_array_equal(data.next_observations[inside], data.observations[inside + 1])
    assert set(np.flatnonzero(data.terminals)) <= set(ends)
    assert 1000 < data.episode_returns.mean() < 2000  # the README's 1440


# ----------------------------------------------------------------------------------------------
# Arrays and npz
# ----------------------------------------------------------------------------------------------


def test_from_arrays_episode_boundaries():
    arrays = _arrays(n=10)
    arrays["rewards"] = np.arange(10, dtype=np.float64)
    arrays["terminals"] = np.zeros(10)
    arrays["terminals"][3] = 1
    timeouts = np.zeros(10, dtype=bool)
    timeouts[6] = True
    data = _from(arrays, timeouts=timeouts, env_id="Toy-v0")
    # episodes [0..3] (terminal), [4..6] (time-out), [7..9] (trailing, incomplete)
    np.testing.assert_array_equal(data.episode_returns, [0 + 1 + 2 + 3, 4 + 5 + 6, 7 + 8 + 9])
    np.testing.assert_array_equal(data.episode_ends, [3, 6, 9])
    np.testing.assert_array_equal(data.terminals, arrays["terminals"])  # time-out stays non-terminal
    assert data.env_id == "Toy-v0"

    explicit = _from(arrays, episode_ends=[3, 4])
    np.testing.assert_array_equal(explicit.episode_returns, [6, 4, sum(range(5, 10))])
    with pytest.raises(DataValidationError, match="terminals is set at row 3"):
        _from(arrays, episode_ends=[4, 9])
    with pytest.raises(DataValidationError, match="strictly increasing"):
        _from(arrays, episode_ends=[5, 3])


@pytest.mark.parametrize(
    "change, pattern",
    [
        (dict(next_observations=np.zeros((9, 3))), r"next_observations has shape \(9, 3\); expected \(10, 3\)"),
        (dict(actions=np.zeros((8, 2))), r"actions has shape \(8, 2\); expected \(10, act_dim\)"),
        (dict(rewards=np.zeros((10, 2))), r"rewards has shape \(10, 2\); expected \(10,\)"),
        (dict(observations=np.zeros(10)), r"observations has shape \(10,\); expected \(N, obs_dim\)"),
        (dict(observations=np.full((10, 3), "a")), r"observations has dtype <U1"),
        (dict(terminals=np.full(10, 0.5)), r"terminals must hold only 0 and 1; row 0"),
        (dict(actions=np.full((10, 2), 1.5)), r"actions row 0 dimension 0 is 1.5"),
    ],
)
def test_from_arrays_rejects_bad_arrays(change, pattern):
    arrays = _arrays()
    arrays.update(change)
    with pytest.raises(DataValidationError, match=pattern):
        _from(arrays)


@pytest.mark.parametrize("name", ["observations", "actions", "rewards", "next_observations"])
def test_from_arrays_names_array_and_row_with_nan(name):
    arrays = _arrays()
    arrays[name] = np.array(arrays[name], dtype=np.float64)
    arrays[name][5] = np.nan
    with pytest.raises(DataValidationError, match=rf"^{name} contains NaN or inf.* at row 5"):
        _from(arrays)


def test_from_arrays_bounds_and_clipping():
    arrays = _arrays()
    arrays["actions"][2, 1] = 1.0 + 5e-5
    data = _from(arrays)
    assert data.actions[2, 1] == np.float32(1.0)
    with pytest.raises(DataValidationError, match="action_low must be below action_high"):
        _from(arrays, action_low=[-1.0, 1.0], action_high=[1.0, 1.0])
    with pytest.raises(DataValidationError, match=r"action_low has shape \(3,\); expected \(2,\)"):
        _from(arrays, action_low=[-1.0, -1.0, -1.0])
    scalar = _from(_arrays(), action_low=-1.0, action_high=1.0)
    np.testing.assert_array_equal(scalar.action_low, [-1.0, -1.0])


def test_npz_roundtrip_of_minari_data(tiny, tmp_path):
    data = load_minari(tiny["id"])
    path = tmp_path / "tiny_dataset"  # no suffix: save_npz must not add one
    save_npz(data, path)
    assert path.is_file()
    loaded = load_npz(path)
    for name in (
        "observations",
        "actions",
        "rewards",
        "next_observations",
        "terminals",
        "episode_returns",
        "action_low",
        "action_high",
        "episode_ends",
    ):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name), err_msg=name)
        assert getattr(loaded, name).dtype == getattr(data, name).dtype, name
    assert loaded.env_id == data.env_id
    assert loaded.dataset_ids == data.dataset_ids
    assert (loaded.ref_min_score, loaded.ref_max_score) == (data.ref_min_score, data.ref_max_score)
    with np.load(path, allow_pickle=False) as archive:
        assert "episode_ends" in archive.files


def test_npz_roundtrip_of_subset_keeps_returns(tiny, tmp_path):
    part = load_minari(tiny["id"]).subset(0.5, seed=0)
    save_npz(part, tmp_path / "part.npz")
    loaded = load_npz(tmp_path / "part.npz")
    np.testing.assert_array_equal(loaded.episode_returns, part.episode_returns)
    np.testing.assert_array_equal(loaded.observations, part.observations)
    assert loaded.episode_ends is None
    assert loaded.reward_scale() == part.reward_scale()


def test_load_npz_user_file_and_missing_keys(tmp_path):
    arrays = _arrays()
    arrays["terminals"][4] = 1
    np.savez(tmp_path / "user.npz", action_low=-np.ones(2), action_high=np.ones(2), **arrays)
    data = load_npz(tmp_path / "user.npz", env_id="Toy-v0")
    assert len(data) == 10 and data.env_id == "Toy-v0"
    np.testing.assert_array_equal(data.episode_ends, [4, 9])

    del arrays["next_observations"]
    np.savez(tmp_path / "broken.npz", action_low=-np.ones(2), action_high=np.ones(2), **arrays)
    with pytest.raises(DataValidationError) as info:
        load_npz(tmp_path / "broken.npz")
    message = str(info.value)
    assert "['next_observations']" in message  # what is missing
    assert "'observations'" in message and "required" in message  # what is present and required

    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataValidationError, match="not a .npz archive"):
        load_npz(tmp_path / "single.npy")


# ----------------------------------------------------------------------------------------------
# Direct construction and concatenate
# ----------------------------------------------------------------------------------------------


def test_constructor_validates():
    good = _from(_arrays())
    fields = dict(
        observations=good.observations,
        actions=good.actions.copy(),
        rewards=good.rewards,
        next_observations=good.next_observations,
        terminals=good.terminals,
        episode_returns=good.episode_returns,
        action_low=good.action_low,
        action_high=good.action_high,
    )
    TransitionDataset(**fields)  # fine as it is
    fields["actions"][3, 0] = 2.0
    with pytest.raises(DataValidationError, match="actions row 3 dimension 0"):
        TransitionDataset(**fields)
    fields["actions"][3, 0] = 0.0
    with pytest.raises(DataValidationError, match="both ref_min_score and ref_max_score"):
        TransitionDataset(**fields, ref_min_score=0.0)
    good.terminals[0] = 2.0
    with pytest.raises(DataValidationError, match="terminals must hold only 0 and 1"):
        good.validate()


def test_concatenate_checks_compatibility():
    a = _from(_arrays(seed=1), env_id="Toy-v0")
    b = _from(_arrays(seed=2), env_id="Toy-v0")
    joined = concatenate([a, b])
    assert len(joined) == 20
    np.testing.assert_array_equal(joined.episode_ends, [9, 19])
    with pytest.raises(DataValidationError, match="obs_dim 4 != 3"):
        concatenate([a, _from(_arrays(obs_dim=4))])
    with pytest.raises(DataValidationError, match="env_id differ"):
        concatenate([a, _from(_arrays(), env_id="Other-v0")])
    with pytest.raises(DataValidationError, match="action bounds"):
        concatenate([a, _from(_arrays(), action_high=[1.0, 2.0])])


def test_no_env_var_leaks(tiny):
    # the module fixture's root is in force; tests that set their own root restored it
    assert os.environ.get("MINARI_DATASETS_PATH") == str(tiny["root"])
