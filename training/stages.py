"""The three stages as functions: behavior pretraining, IQL critic, alignment. Each is resumable."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from eda_policy import EDAConfig, EDAPolicy, evaluate_policy

from .alignment import AlignmentSet, alignment_loss, draw_candidates, label_candidates
from .behavior import behavior_loss
from .config import AlignmentConfig, CriticConfig, RunConfig
from .critic import IQLCritic, iql_losses
from .data import TransitionDataset
from .distributed import DistContext
from .loop import StageRunner

BEHAVIOR_DIR = "behavior"
CRITIC_DIR = "critic"
POLICY_DIR = "policy"


@dataclass
class TrainingTensors:
    """A dataset on the device, in the units the networks see (normalised obs, actions in [-1, 1])."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminals: torch.Tensor

    @classmethod
    def build(cls, data: TransitionDataset, device: torch.device) -> "TrainingTensors":
        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)

        mean, std = (tensor(x) for x in data.observation_stats())
        return cls(
            obs=(tensor(data.observations) - mean) / std,
            actions=tensor(data.normalized_actions()).clamp(-1.0, 1.0),
            rewards=tensor(data.rewards) * float(data.reward_scale()),
            next_obs=(tensor(data.next_observations) - mean) / std,
            terminals=tensor(data.terminals),
        )

    def __len__(self) -> int:
        return self.obs.shape[0]


def policy_config(run: RunConfig, data: TransitionDataset, **overrides: object) -> EDAConfig:
    """EDAConfig for a dataset: dims, bounds, provenance and the run's architecture."""
    b = run.behavior
    fields = dict(
        obs_dim=data.obs_dim,
        act_dim=data.act_dim,
        action_low=[float(x) for x in data.action_low],
        action_high=[float(x) for x in data.action_high],
        hidden_dim=b.hidden_dim,
        num_blocks=b.num_blocks,
        ff_mult=b.ff_mult,
        dropout=b.dropout,
        critic_hidden_dim=run.critic.hidden_dim,
        critic_num_layers=run.critic.num_layers,
        env_id=data.env_id,
        dataset_id="+".join(data.dataset_ids) if data.dataset_ids else None,
        ref_min_score=data.ref_min_score,
        ref_max_score=data.ref_max_score,
    )
    fields.update(overrides)
    return EDAConfig(**fields)


def evaluation_metrics(policy: EDAPolicy, run: RunConfig, episodes: int | None = None) -> dict[str, float]:
    result = evaluate_policy(policy, num_episodes=episodes or run.eval_episodes, seed=run.seed + 10_000)
    out = {"eval_return": result.mean_return}
    if result.mean_normalized is not None:
        out["eval_score"] = result.mean_normalized
    return out


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam; on a GPU the fused kernel (one launch per step instead of one per tensor)."""
    return torch.optim.Adam(params, lr=lr, fused=device.type == "cuda")


# ---------------------------------------------------------------------- stage 1
def train_behavior(
    run: RunConfig,
    data: TransitionDataset,
    *,
    dist: DistContext | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> EDAPolicy:
    """Pretrain the behavior model; writes ``<output>/behavior/`` (a from_pretrained folder) when done."""
    dist = dist or DistContext()
    device = torch.device(run.device)
    torch.manual_seed(run.seed * 7919 + dist.rank)
    policy = EDAPolicy(policy_config(run, data)).to(device)
    policy.set_observation_stats(*data.observation_stats())
    dist.broadcast_module(policy)
    tensors = TrainingTensors.build(data, device)
    generator = seeded_generator(device, run.seed * 1000 + 1 + dist.rank)
    cfg = run.behavior
    optimizer = adam(policy.energy.parameters(), cfg.lr, device)
    policy.train()

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(tensors), (cfg.batch_size,), device=device, generator=generator)
        loss = behavior_loss(
            policy.energy, policy.schedule, tensors.obs[idx], tensors.actions[idx], t_min=policy.config.t_min, generator=generator
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(policy.energy.parameters())
        optimizer.step()
        return {"loss": loss.detach()}

    runner = StageRunner(
        "behavior", Path(run.output), cfg.steps, {"policy": policy}, {"adam": optimizer}, generator,
        dist=dist, log_every=run.log_every, checkpoint_every=run.checkpoint_every,
        eval_every=run.eval_every, progress=progress, stop_after=stop_after,
    )
    reached = runner.run(step_fn, lambda step: evaluation_metrics(policy, run))
    policy.eval()
    if reached >= cfg.steps and dist.is_main:
        policy.save_pretrained(Path(run.output) / BEHAVIOR_DIR)
    return policy


# ---------------------------------------------------------------------- stage 2
def train_critic(
    run: RunConfig,
    data: TransitionDataset,
    *,
    dist: DistContext | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> IQLCritic:
    """Train the IQL critic; writes ``<output>/critic/critic.safetensors`` when done."""
    dist = dist or DistContext()
    device = torch.device(run.device)
    cfg = run.critic
    torch.manual_seed(run.seed * 7919 + 17 + dist.rank)
    # The critic sees observations normalised exactly as the policy does.
    tensors = TrainingTensors.build(data, device)
    critic = IQLCritic(data.obs_dim, data.act_dim, cfg).to(device)
    dist.broadcast_module(critic)
    generator = seeded_generator(device, run.seed * 1000 + 2 + dist.rank)
    q_opt = adam(critic.q.parameters(), cfg.lr, device)
    v_opt = adam(critic.v.parameters(), cfg.lr, device)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(tensors), (cfg.batch_size,), device=device, generator=generator)
        v_loss, q_loss = iql_losses(
            critic, tensors.obs[idx], tensors.actions[idx], tensors.rewards[idx], tensors.next_obs[idx], tensors.terminals[idx], cfg
        )
        v_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        dist.average_gradients(critic.v.parameters())
        v_opt.step()
        q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        dist.average_gradients(critic.q.parameters())
        q_opt.step()
        critic.update_target(cfg.tau)
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach()}

    runner = StageRunner(
        "critic", Path(run.output), cfg.steps, {"critic": critic}, {"q": q_opt, "v": v_opt}, generator,
        dist=dist, log_every=run.log_every, checkpoint_every=run.checkpoint_every, progress=progress, stop_after=stop_after,
    )
    reached = runner.run(step_fn)
    if reached >= cfg.steps and dist.is_main:
        save_critic(critic, cfg, Path(run.output) / CRITIC_DIR)
    return critic


def save_critic(critic: IQLCritic, config: CriticConfig, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in critic.state_dict().items()}, str(directory / "critic.safetensors"))
    (directory / "critic_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))


def load_critic(directory: Path, obs_dim: int, act_dim: int, device: torch.device | str = "cpu") -> IQLCritic:
    config = CriticConfig(**json.loads((Path(directory) / "critic_config.json").read_text()))
    critic = IQLCritic(obs_dim, act_dim, config)
    critic.load_state_dict(load_file(str(Path(directory) / "critic.safetensors")), strict=True)
    return critic.to(device).eval()


# ---------------------------------------------------------------------- stage 3
def choose_states(num_total: int, cfg: AlignmentConfig, seed: int) -> np.ndarray:
    """Seeded indices of the states used for alignment: ``num_states`` of them, then ``label_fraction``."""
    rng = np.random.default_rng(seed)
    count = num_total if cfg.num_states <= 0 else min(cfg.num_states, num_total)
    idx = rng.permutation(num_total)[:count]
    if cfg.label_fraction < 1.0:
        keep = max(1, int(round(cfg.label_fraction * count)))
        idx = idx[:keep]
    return np.sort(idx)


def build_alignment_set(
    reference: EDAPolicy,
    obs_norm: torch.Tensor,
    q_fn,
    cfg: AlignmentConfig,
    seed: int,
    cache: Path | None = None,
) -> AlignmentSet:
    """K behavior samples per state drawn once with the few-step sampler, labelled by ``q_fn``; cached."""
    if cache is not None and cache.exists():
        stored = load_file(str(cache), device=str(obs_norm.device))
        return AlignmentSet(stored["obs"], stored["actions"], stored["q_values"])
    generator = seeded_generator(obs_norm.device, seed * 1000 + 3)
    actions = draw_candidates(reference, obs_norm, cfg.num_actions, sample_steps=cfg.sample_steps, generator=generator)
    q_values = label_candidates(q_fn, obs_norm, actions)
    result = AlignmentSet(obs_norm, actions, q_values)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        save_file({"obs": obs_norm.cpu().contiguous(), "actions": actions.cpu().contiguous(), "q_values": q_values.cpu().contiguous()}, str(tmp))
        tmp.replace(cache)
    return result


def align(
    reference: EDAPolicy,
    alignment_set: AlignmentSet,
    cfg: AlignmentConfig,
    *,
    seed: int = 0,
    run_dir: Path,
    critic: IQLCritic | None = None,
    dist: DistContext | None = None,
    progress: bool = True,
    log_every: int = 100,
    checkpoint_every: int = 1_000,
    eval_every: int = 0,
    eval_fn: Callable[[EDAPolicy], dict[str, float]] | None = None,
    stop_after: int | None = None,
) -> EDAPolicy:
    """Fine-tune a copy of ``reference`` so that pi ~ mu exp(alpha Q) on the alignment set.

    The reference stays frozen (no gradients ever reach it). With ``critic``, the returned policy
    carries the critic's target twin-Q for best-of-N action selection.
    """
    dist = dist or DistContext()
    device = reference.device
    torch.manual_seed(seed * 7919 + 31 + dist.rank)
    config = dataclasses.replace(
        reference.config,
        has_critic=critic is not None,
        num_candidates=cfg.policy_candidates if critic is not None else 1,
        dropout=0.0,
    )
    if critic is not None:
        config = dataclasses.replace(
            config, critic_hidden_dim=critic.q.q1[0].out_features, critic_num_layers=(len(critic.q.q1) - 1) // 2
        )
    policy = EDAPolicy(config).to(device)
    own = policy.state_dict()
    own.update({k: v for k, v in reference.state_dict().items() if not k.startswith("critic.")})
    if critic is not None:
        own.update({f"critic.{k}": v for k, v in critic.q_target.state_dict().items()})
    policy.load_state_dict(own, strict=True)
    reference.eval().requires_grad_(False)
    if policy.critic is not None:
        policy.critic.requires_grad_(False)
    policy.eval()  # dropout off; gradients still flow to the copy
    generator = seeded_generator(device, seed * 1000 + 4 + dist.rank)
    optimizer = adam(policy.energy.parameters(), cfg.lr, device)
    n = len(alignment_set)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(n, (min(cfg.batch_states, n),), device=device, generator=generator)
        loss = alignment_loss(
            policy.energy, reference.energy, policy.schedule,
            alignment_set.obs[idx], alignment_set.actions[idx], alignment_set.q_values[idx],
            alpha=cfg.alpha, beta=cfg.beta, t_min=config.t_min, target=cfg.target, generator=generator,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(policy.energy.parameters())
        optimizer.step()
        return {"loss": loss.detach()}

    runner = StageRunner(
        "alignment", Path(run_dir), cfg.steps, {"policy": policy}, {"adam": optimizer}, generator,
        dist=dist, log_every=log_every, checkpoint_every=checkpoint_every, eval_every=eval_every,
        progress=progress, stop_after=stop_after,
    )
    runner.run(step_fn, (lambda step: eval_fn(policy)) if eval_fn is not None else None)
    return policy.eval()


def train_alignment(
    run: RunConfig,
    data: TransitionDataset,
    reference: EDAPolicy,
    critic: IQLCritic,
    *,
    dist: DistContext | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> EDAPolicy:
    """Stage 3 on a dataset with the IQL critic's labels (min of the target heads)."""
    cfg = run.alignment
    device = reference.device
    idx = choose_states(len(data), cfg, run.seed)
    obs = torch.as_tensor(data.observations[idx], dtype=torch.float32, device=device)
    obs_norm = reference.normalize_obs(obs)
    alignment_set = build_alignment_set(
        reference, obs_norm, critic.target_min_q, cfg, run.seed,
        cache=Path(run.output) / "state" / "alignment_set.safetensors" if (dist is None or dist.is_main) else None,
    )
    return align(
        reference, alignment_set, cfg, seed=run.seed, run_dir=Path(run.output), critic=critic, dist=dist,
        progress=progress, log_every=run.log_every, checkpoint_every=run.checkpoint_every,
        eval_every=run.eval_every, eval_fn=lambda policy: evaluation_metrics(policy, run), stop_after=stop_after,
    )
