"""The critic's own policy: advantage-weighted regression (IQL's policy extraction), a baseline for EDA.

A Gaussian MLP policy is fit to the dataset's actions with weights exp(temperature * (Q(s,a) - V(s))),
clipped at 100, using the trained IQL critic. Evaluated with its mean action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from eda_policy.networks import mlp

from .critic import IQLCritic


@dataclass
class AWRConfig:
    steps: int = 50_000
    batch_size: int = 256
    lr: float = 3e-4
    temperature: float = 3.0
    max_weight: float = 100.0
    hidden_dim: int = 256
    num_layers: int = 2


class GaussianPolicy(nn.Module):
    """tanh-squashed mean, state-independent log std; actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.mean = mlp(obs_dim, hidden, layers, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        dist = torch.distributions.Normal(torch.tanh(self.mean(obs)), self.log_std.clamp(-5.0, 2.0).exp())
        return dist.log_prob(actions).sum(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean(obs))


def train_awr(
    obs: torch.Tensor, actions: torch.Tensor, critic: IQLCritic, config: AWRConfig, seed: int = 0
) -> GaussianPolicy:
    """Fit the AWR policy on normalised observations and actions in [-1, 1]."""
    torch.manual_seed(seed)
    generator = torch.Generator(device=obs.device).manual_seed(seed)
    policy = GaussianPolicy(obs.shape[1], actions.shape[1], config.hidden_dim, config.num_layers).to(obs.device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    for _ in range(config.steps):
        idx = torch.randint(obs.shape[0], (config.batch_size,), generator=generator, device=obs.device)
        o, a = obs[idx], actions[idx]
        with torch.no_grad():
            advantage = critic.target_min_q(o, a) - critic.v(o)
            weight = torch.exp(config.temperature * advantage).clamp(max=config.max_weight)
        loss = -(weight * policy.log_prob(o, a)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return policy.eval()


def awr_actor(policy: GaussianPolicy, obs_mean: np.ndarray, obs_std: np.ndarray, low: np.ndarray, high: np.ndarray):
    """A batch act function (raw obs -> env actions) for :func:`eda_policy.evaluation.run_episodes`."""
    mean_t = torch.as_tensor(obs_mean, dtype=torch.float32)
    std_t = torch.as_tensor(obs_std, dtype=torch.float32)

    def act(obs: np.ndarray) -> np.ndarray:
        o = (torch.as_tensor(np.asarray(obs), dtype=torch.float32) - mean_t) / std_t
        a = policy.act(o).numpy()
        return low + (a + 1.0) * 0.5 * (high - low)

    return act
