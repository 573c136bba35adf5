"""Stage 2: implicit Q-learning (IQL) critic: twin Q with a Polyak target, and V by expectile regression."""

from __future__ import annotations

import copy

import torch
from torch import nn

from eda_policy.networks import TwinQ, ValueNetwork

from .config import CriticConfig


class IQLCritic(nn.Module):
    """Q (twin), its Polyak-averaged target, and V. Registered submodules, so all are saved."""

    def __init__(self, obs_dim: int, act_dim: int, config: CriticConfig) -> None:
        super().__init__()
        self.q = TwinQ(obs_dim, act_dim, config.hidden_dim, config.num_layers)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = ValueNetwork(obs_dim, config.hidden_dim, config.num_layers)

    @torch.no_grad()
    def target_min_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """min of the two target heads: the Q-label used for alignment."""
        return self.q_target.min_q(obs, actions)

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q.parameters()), tau)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2: |expectile - 1(diff < 0)| * diff^2, mean."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def iql_losses(
    critic: IQLCritic,
    obs: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    next_obs: torch.Tensor,
    terminals: torch.Tensor,
    config: CriticConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(V loss, Q loss) for one batch; rewards already scaled, terminals = env termination only."""
    target_q = critic.target_min_q(obs, actions)
    v_loss = expectile_loss(target_q - critic.v(obs), config.expectile)
    with torch.no_grad():
        backup = rewards + config.gamma * (1.0 - terminals) * critic.v(next_obs)
    q1, q2 = critic.q(obs, actions)
    q_loss = (q1 - backup).pow(2).mean() + (q2 - backup).pow(2).mean()
    return v_loss, q_loss
