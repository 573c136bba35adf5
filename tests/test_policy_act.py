"""act(): inputs, outputs, seeding, action bounds, best-of-N, Gymnasium loops and evaluation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import RescaleAction

from conftest import TINY_NETWORK, make_tiny_policy
from eda_policy import EDAConfig, EDAPolicy, evaluate_policy

HOPPER_RANDOM, HOPPER_EXPERT = -20.272305, 3234.3  # D4RL reference returns


@pytest.fixture(scope="module")
def hopper():
    env = gym.make("Hopper-v5")
    yield env
    env.close()


@pytest.fixture
def critic_policy() -> EDAPolicy:
    return make_tiny_policy(seed=4, has_critic=True, num_candidates=4)


# ----------------------------------------------------------------------------- input types and shapes


def test_single_observation_in_every_input_type(tiny_policy, hopper):
    obs64, _ = hopper.reset(seed=0)
    assert obs64.dtype == np.float64
    expected = tiny_policy.act(obs64, seed=3)
    assert isinstance(expected, np.ndarray) and expected.dtype == np.float32 and expected.shape == (3,)
    variants = {
        "float32": obs64.astype(np.float32),
        "list": obs64.tolist(),
        "torch32": torch.as_tensor(obs64, dtype=torch.float32),
        "torch64": torch.as_tensor(obs64),
    }
    for name, obs in variants.items():
        action = tiny_policy.act(obs, seed=3)
        assert action.dtype == np.float32 and action.shape == (3,), name
        np.testing.assert_array_equal(action, expected, err_msg=name)
    assert hopper.action_space.contains(expected)


def test_batch_shapes(tiny_policy, obs_batch):
    actions = tiny_policy.act(obs_batch, seed=0)
    assert actions.shape == (8, 3) and actions.dtype == np.float32
    one = tiny_policy.act(obs_batch[:1], seed=0)
    assert one.shape == (1, 3)
    as_list = tiny_policy.act(obs_batch.tolist(), seed=0)
    np.testing.assert_array_equal(as_list, actions)
    int_obs = tiny_policy.act(np.zeros((2, 11), dtype=np.int64), seed=0)
    assert int_obs.shape == (2, 3)


def test_batch_rows_do_not_interact(tiny_policy, obs_batch):
    """No layer mixes samples: a row's deterministic action does not depend on the rest of the batch."""
    batch = tiny_policy.act(obs_batch, deterministic=True)
    for i in (0, 3, 7):
        np.testing.assert_allclose(batch[i], tiny_policy.act(obs_batch[i], deterministic=True), atol=1e-5)


def test_observations_are_standardised_with_the_stored_statistics(tiny_policy, obs_batch):
    mean, std = tiny_policy.obs_mean.numpy().astype(np.float64), tiny_policy.obs_std.numpy().astype(np.float64)
    assert not np.allclose(std, 1.0)
    identity = make_tiny_policy()  # the same weights
    identity.set_observation_stats(np.zeros(11), np.ones(11))
    standardised = (obs_batch - mean) / std
    actions = tiny_policy.act(obs_batch, seed=0)
    np.testing.assert_allclose(identity.act(standardised, seed=0), actions, atol=1e-5)
    # log f is continuous (no clipping at the box edge), so it sees any error in the scaling.
    logp = tiny_policy.log_density(obs_batch, actions)
    np.testing.assert_allclose(identity.log_density(standardised, actions), logp, rtol=1e-4, atol=1e-4)
    assert not np.allclose(identity.log_density(obs_batch, actions), logp, rtol=1e-3, atol=1e-3)

    raw = make_tiny_policy(normalize_observations=False)  # stats are ignored: stored as 0 / 1
    np.testing.assert_array_equal(raw.obs_mean.numpy(), np.zeros(11, np.float32))
    np.testing.assert_array_equal(raw.obs_std.numpy(), np.ones(11, np.float32))


# ----------------------------------------------------------------------------- randomness


def test_seeding(tiny_policy, obs_batch):
    a = tiny_policy.act(obs_batch, seed=0)
    np.testing.assert_array_equal(a, tiny_policy.act(obs_batch, seed=0))
    assert not np.array_equal(a, tiny_policy.act(obs_batch, seed=1))
    gen_a = tiny_policy.act(obs_batch, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(gen_a, a)
    with pytest.raises(ValueError, match="seed or generator"):
        tiny_policy.act(obs_batch, seed=0, generator=torch.Generator())


def test_unseeded_actions_vary_and_deterministic_is_reproducible(tiny_policy, obs_batch):
    draws = [tiny_policy.act(obs_batch) for _ in range(3)]
    assert not (np.array_equal(draws[0], draws[1]) and np.array_equal(draws[1], draws[2]))
    d1 = tiny_policy.act(obs_batch, deterministic=True)
    d2 = tiny_policy.act(obs_batch, deterministic=True)
    np.testing.assert_array_equal(d1, d2)
    assert not np.array_equal(d1, draws[0])


def test_act_does_not_leave_train_mode_or_use_dropout(obs_batch):
    policy = make_tiny_policy(seed=2, dropout=0.5).train()
    first = policy.act(obs_batch, deterministic=True)
    assert policy.training, "act() must restore the module's mode"
    np.testing.assert_array_equal(first, policy.act(obs_batch, deterministic=True))


# ----------------------------------------------------------------------------- action bounds


def test_actions_inside_space_for_every_step_count(tiny_policy, hopper):
    obs = np.random.default_rng(1).normal(scale=3.0, size=(64, 11))
    for num_steps in (1, 2, 3, 10):
        actions = tiny_policy.act(obs, seed=num_steps, num_steps=num_steps)
        assert all(hopper.action_space.contains(a) for a in actions), num_steps
    unclipped = make_tiny_policy(seed=1, clip_denoised=False)
    actions = unclipped.act(obs, seed=0)
    assert all(hopper.action_space.contains(a) for a in actions)


def test_non_symmetric_bounds_from_rescaled_env():
    env = RescaleAction(gym.make("Hopper-v5"), min_action=np.float32(0.0), max_action=np.float32(2.0))
    try:
        torch.manual_seed(0)
        policy = EDAPolicy.from_env(env, **TINY_NETWORK)
        assert policy.config.action_low == [0.0] * 3 and policy.config.action_high == [2.0] * 3
        policy.check_env(env)
        obs = np.random.default_rng(2).normal(size=(128, 11))
        actions = policy.act(obs, seed=0)
        assert actions.min() >= 0.0 and actions.max() <= 2.0
        assert all(env.action_space.contains(a) for a in actions)
        # The [-1, 1] samples are mapped, not clipped: both halves of [0, 2] are reached.
        assert (actions < 0.5).any() and (actions > 1.5).any()
        single, _ = env.reset(seed=0)
        for _ in range(5):
            action = policy.act(single)
            assert env.action_space.contains(action)
            single, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        with pytest.raises(ValueError, match="action bounds"):
            policy.check_env(gym.make("Hopper-v5"))
    finally:
        env.close()


def test_lopsided_bounds_per_dimension(obs_batch):
    low, high = [-0.5, 0.0, 3.0], [0.5, 10.0, 3.5]
    policy = make_tiny_policy(seed=6, action_low=low, action_high=high)
    actions = policy.act(np.repeat(obs_batch, 8, axis=0), seed=0)
    assert (actions >= np.float32(low)).all() and (actions <= np.float32(high)).all()
    assert (actions[:, 2] >= 3.0).all()


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(12), r"shape \(12,\).*\(11,\)"),
        (np.zeros((4, 10)), r"\(4, 10\).*\(N, 11\)"),
        (np.zeros((2, 3, 11)), r"\(2, 3, 11\)"),
        (np.zeros(()), r"expected"),
        (np.zeros((0, 11)), r"N >= 1"),
        (np.array([0.0] * 10 + [np.nan]), r"NaN or inf"),
        (np.array([[0.0] * 11, [0.0] * 10 + [np.inf]]), r"NaN or inf in rows \[1\]"),
        (np.array(["a"] * 11), r"dtype"),
        (np.array([None] * 11, dtype=object), r"dtype"),
        ("hopper", r"dtype"),
        ([[0.0] * 11, [0.0] * 3], r"could not be read|dtype"),
        (torch.zeros(11, dtype=torch.bool), r"dtype"),
        (torch.zeros(11, dtype=torch.complex64), r"dtype"),
        ({"observation": np.zeros(11)}, r"dict observation"),
    ],
    ids=[
        "too-long",
        "wrong-width",
        "3-d",
        "scalar",
        "empty-batch",
        "nan",
        "inf-row",
        "strings",
        "objects",
        "a-string",
        "ragged",
        "bool-tensor",
        "complex-tensor",
        "dict",
    ],
)
def test_bad_observations_raise_helpful_value_error(tiny_policy, bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_policy.act(bad)


def test_bad_num_steps_is_refused_not_replaced_by_the_default(tiny_policy, obs_batch):
    with pytest.raises(ValueError, match="num_steps"):
        tiny_policy.act(obs_batch, num_steps=0)
    with pytest.raises(ValueError, match="num_steps"):
        tiny_policy.act(obs_batch, num_steps=-2)


def test_reset_tuple_is_explained(tiny_policy, hopper):
    with pytest.raises(ValueError, match=r"env\.reset\(\)"):
        tiny_policy.act(hopper.reset(seed=0))


def test_predict_is_stable_baselines_protocol(tiny_policy, obs_batch):
    action, state = tiny_policy.predict(obs_batch[0])
    assert state is None and action.shape == (3,) and action.dtype == np.float32
    np.testing.assert_array_equal(action, tiny_policy.act(obs_batch[0], deterministic=True))
    batch_action, _ = tiny_policy.predict(obs_batch, deterministic=True)
    assert batch_action.shape == (8, 3)


# ----------------------------------------------------------------------------- densities


def test_log_density_and_log_ratio(tiny_policy, obs_batch):
    actions = tiny_policy.act(obs_batch, seed=0)
    logp = tiny_policy.log_density(obs_batch, actions)
    assert logp.shape == (8,) and logp.dtype == np.float32 and np.isfinite(logp).all()
    single = tiny_policy.log_density(obs_batch[0], actions[0])
    assert np.ndim(single) == 0
    np.testing.assert_allclose(single, logp[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(tiny_policy.log_density(obs_batch, actions, t=0.5), logp)

    np.testing.assert_array_equal(tiny_policy.log_ratio(obs_batch, actions, tiny_policy), np.zeros(8, np.float32))
    other = make_tiny_policy(seed=99)
    assert np.abs(other.log_ratio(obs_batch, actions, tiny_policy)).max() > 0

    with pytest.raises(ValueError, match="8 observations but 3 actions"):
        tiny_policy.log_density(obs_batch, actions[:3])
    with pytest.raises(ValueError, match="t must be"):
        tiny_policy.log_density(obs_batch, actions, t=0.0)


# ----------------------------------------------------------------------------- env checks


def test_check_env_accepts_hopper_and_rejects_walker(tiny_policy):
    hopper = gym.make("Hopper-v5")
    walker = gym.make("Walker2d-v5")
    vec = gym.make_vec("Hopper-v5", num_envs=2, vectorization_mode="sync")
    try:
        tiny_policy.check_env(hopper)
        tiny_policy.check_env(vec)
        with pytest.raises(ValueError) as info:
            tiny_policy.check_env(walker)
        message = str(info.value)
        assert "Walker2d-v5" in message and "(17,)" in message and "(11,)" in message and "action shape" in message
    finally:
        for env in (hopper, walker, vec):
            env.close()


# ----------------------------------------------------------------------------- best-of-N


def test_best_of_n_returns_the_candidate_with_highest_min_q(critic_policy, obs_batch):
    k = critic_policy.config.num_candidates
    obs = np.repeat(obs_batch, 4, axis=0)  # 32 states
    n = obs.shape[0]
    chosen = critic_policy.act(obs, seed=21)
    assert chosen.shape == (n, 3)

    # The same generator seed draws the same start noise for the k copies of each state, row by row.
    candidates = critic_policy.act(np.repeat(obs, k, axis=0), seed=21, num_candidates=1)
    with torch.no_grad():
        q = critic_policy.critic.min_q(
            critic_policy.normalize_obs(torch.as_tensor(np.repeat(obs, k, axis=0), dtype=torch.float32)),
            critic_policy.from_env_action(torch.as_tensor(candidates)),
        ).view(n, k)
    best = q.argmax(dim=1).numpy()
    expected = candidates.reshape(n, k, 3)[np.arange(n), best]
    np.testing.assert_allclose(chosen, expected, atol=1e-6)
    # The check is only meaningful if the winner is not always the same slot.
    assert len(set(best.tolist())) > 1, best
    distinct = [i for i in range(n) if len({tuple(c) for c in candidates.reshape(n, k, 3)[i]}) > 1]
    assert any(not np.allclose(chosen[i], candidates.reshape(n, k, 3)[i, 0]) for i in distinct)


def test_best_of_n_overrides_and_errors(critic_policy, tiny_policy, obs_batch):
    single = critic_policy.act(obs_batch, seed=5, num_candidates=1)
    np.testing.assert_array_equal(single, critic_policy.act(obs_batch, seed=5, num_candidates=1))
    assert critic_policy.act(obs_batch[0], seed=5).shape == (3,)
    # deterministic=True has one candidate only: no critic call changes it.
    np.testing.assert_array_equal(
        critic_policy.act(obs_batch, deterministic=True), critic_policy.act(obs_batch, deterministic=True, num_candidates=1)
    )
    with pytest.raises(ValueError, match="critic"):
        tiny_policy.act(obs_batch, num_candidates=4)
    with pytest.raises(ValueError, match="num_candidates"):
        critic_policy.act(obs_batch, num_candidates=0)
    with pytest.raises(ValueError, match="has_critic"):
        EDAConfig(obs_dim=11, act_dim=3, num_candidates=4)


# ----------------------------------------------------------------------------- Gymnasium loops


def test_drives_a_hopper_episode_to_the_end(tiny_policy):
    env = gym.make("Hopper-v5")
    try:
        obs, _ = env.reset(seed=0)
        steps, done = 0, False
        while not done:
            action = tiny_policy.act(obs)
            assert env.action_space.contains(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            assert np.isfinite(reward)
            steps += 1
            done = terminated or truncated
        assert 0 < steps <= env.spec.max_episode_steps
    finally:
        env.close()


def test_vector_env_batched_actions(tiny_policy):
    envs = gym.make_vec("Hopper-v5", num_envs=4, vectorization_mode="sync")
    try:
        tiny_policy.check_env(envs)
        obs, _ = envs.reset(seed=0)
        generator = torch.Generator().manual_seed(0)
        finished = 0
        for _ in range(50):
            actions = tiny_policy.act(obs, generator=generator)
            assert actions.shape == (4, 3) and actions.dtype == np.float32
            assert envs.action_space.contains(actions)
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            assert obs.shape == (4, 11) and np.isfinite(rewards).all()
            finished += int((terminated | truncated).sum())
        assert finished > 0  # an untrained hopper falls: autoreset is exercised
    finally:
        envs.close()


def test_evaluate_policy_counts_episodes_and_normalises_scores():
    policy = make_tiny_policy(seed=0, ref_min_score=HOPPER_RANDOM, ref_max_score=HOPPER_EXPERT)
    result = evaluate_policy(policy, num_episodes=3, seed=10, deterministic=True, max_parallel=2)
    assert result.env_id == "Hopper-v5" and len(result.returns) == 3 and len(result.lengths) == 3
    assert result.normalized_scores is not None and len(result.normalized_scores) == 3
    expected = 100.0 * (np.asarray(result.returns) - HOPPER_RANDOM) / (HOPPER_EXPERT - HOPPER_RANDOM)
    np.testing.assert_allclose(result.normalized_scores, expected)
    assert result.to_dict()["num_episodes"] == 3
    assert result.mean_normalized == pytest.approx(float(np.mean(expected)))

    # Episode i is reset with seed + i: replay episode 2 by hand with single-observation act().
    env = gym.make("Hopper-v5")
    try:
        obs, _ = env.reset(seed=12)
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs, deterministic=True))
            total += float(reward)
            length += 1
            done = terminated or truncated
    finally:
        env.close()
    assert result.lengths[2] == length
    assert result.returns[2] == pytest.approx(total, rel=1e-3)

    plain = evaluate_policy(make_tiny_policy(seed=0), num_episodes=2, seed=0)
    assert len(plain.returns) == 2 and plain.normalized_scores is None and plain.mean_normalized is None


def test_from_env_of_a_wrapped_env_does_not_claim_the_plain_env_id():
    import gymnasium as gym

    from eda_policy import EDAPolicy, evaluate_policy

    wrapped = gym.wrappers.RescaleAction(gym.make("Hopper-v5"), min_action=0.0, max_action=2.0)
    policy = EDAPolicy.from_env(wrapped, hidden_dim=32, num_blocks=1, ff_mult=1)
    assert policy.config.env_id is None
    assert EDAPolicy.from_env("Hopper-v5", hidden_dim=32, num_blocks=1, ff_mult=1).config.env_id == "Hopper-v5"
    with pytest.raises(ValueError, match="does not match this policy"):
        evaluate_policy(policy, "Hopper-v5", num_episodes=1)
