"""Networks: the scalar energy f(a_t, s, t) of the bottleneck diffusion model, and a twin-Q critic.

No layer mixes samples of a batch (no BatchNorm): the noise prediction is obtained by
differentiating the *sum* of f over the batch with respect to the actions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import EDAConfig


class GaussianFourierTime(nn.Module):
    """Random Fourier features of t: [sin(2 pi w t), cos(2 pi w t)] with fixed w ~ N(0, scale^2)."""

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time_embed_dim must be even, got {dim}")
        # A persistent buffer: the frequencies are part of the checkpoint.
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 2.0 * math.pi * t[:, None] * self.freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ResidualBlock(nn.Module):
    """Pre-LayerNorm MLP block: x + Dropout(W2 SiLU(W1 LN(x)))."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.fc2(nn.functional.silu(self.fc1(self.norm(x)))))


class EnergyNetwork(nn.Module):
    """f_theta(a_t, s, t) -> one scalar per sample. Noise prediction is -sigma_t * grad_a f."""

    def __init__(self, config: EDAConfig) -> None:
        super().__init__()
        c = config
        self.time_features = GaussianFourierTime(c.time_embed_dim, c.fourier_scale)
        self.time_mlp = nn.Sequential(
            nn.Linear(c.time_embed_dim, c.time_embed_dim), nn.SiLU(), nn.Linear(c.time_embed_dim, c.time_embed_dim)
        )
        self.action_embed = nn.Linear(c.act_dim, c.action_embed_dim)
        self.obs_embed = nn.Linear(c.obs_dim, c.obs_embed_dim)
        width = c.time_embed_dim + c.action_embed_dim + c.obs_embed_dim
        self.input_proj = nn.Linear(width, c.hidden_dim)
        self.blocks = nn.ModuleList(
            ResidualBlock(c.hidden_dim, c.hidden_dim * c.ff_mult, c.dropout) for _ in range(c.num_blocks)
        )
        self.head = nn.Linear(c.hidden_dim, c.act_dim)

    def condition(self, obs: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts of the input that do not depend on the action: (obs embedding, time embedding)."""
        return self.obs_embed(obs), self.time_mlp(self.time_features(t))

    def energy_from_condition(
        self, action: torch.Tensor, obs_emb: torch.Tensor, time_emb: torch.Tensor
    ) -> torch.Tensor:
        h = torch.cat([time_emb, self.action_embed(action), obs_emb], dim=-1)
        h = self.input_proj(h)
        for block in self.blocks:
            h = block(h)
        return self.head(nn.functional.silu(h)).sum(dim=-1)

    def noise_prediction(
        self, action_t: torch.Tensor, obs: torch.Tensor, t: torch.Tensor, sigma_t: torch.Tensor, create_graph: bool = False
    ) -> torch.Tensor:
        """eps = -sigma_t * grad_a f(a_t, s, t) by autograd; ``create_graph=True`` for training losses."""
        with torch.enable_grad():
            if not action_t.requires_grad:
                action_t = action_t.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(action_t, obs, t).sum(), action_t, create_graph=create_graph)
        return -sigma_t[:, None] * grad

    def action_gradient(self, action: torch.Tensor, obs_emb: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """grad_a f(a, s, t) in closed form: one forward and one hand-written backward, no autograd.

        Used for sampling, where no graph is needed at all (it runs under ``torch.inference_mode``).
        Dropout is skipped, as in eval mode. Equal to ``autograd.grad(f.sum(), a)`` (tested).
        """
        a_width = self.action_embed.out_features
        t_width = time_emb.shape[-1]
        h = torch.cat([time_emb, self.action_embed(action), obs_emb], dim=-1)
        z = self.input_proj(h)
        saved = []
        for block in self.blocks:
            mean = z.mean(dim=-1, keepdim=True)
            centred = z - mean
            inv_std = torch.rsqrt(centred.pow(2).mean(dim=-1, keepdim=True) + block.norm.eps)
            x_hat = centred * inv_std
            u = block.fc1(x_hat * block.norm.weight + block.norm.bias)
            z = z + block.fc2(nn.functional.silu(u))
            saved.append((x_hat, inv_std, u))
        # f = sum_j head(silu(z))_j, so df/dz = silu'(z) * (column sums of the head's weight).
        g = _silu_grad(z) * self.head.weight.sum(dim=0)
        for block, (x_hat, inv_std, u) in zip(reversed(self.blocks), reversed(saved)):
            g_u = (g @ block.fc2.weight) * _silu_grad(u)
            g_xhat = (g_u @ block.fc1.weight) * block.norm.weight
            g_norm = inv_std * (
                g_xhat - g_xhat.mean(dim=-1, keepdim=True) - x_hat * (g_xhat * x_hat).mean(dim=-1, keepdim=True)
            )
            g = g + g_norm
        g_h = g @ self.input_proj.weight
        return g_h[:, t_width : t_width + a_width] @ self.action_embed.weight

    def forward(self, action: torch.Tensor, obs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """f(a_t, s, t) with ``action`` (B, A), ``obs`` (B, S), ``t`` (B,) -> (B,)."""
        obs_emb, time_emb = self.condition(obs, t)
        return self.energy_from_condition(action, obs_emb, time_emb)


def _silu_grad(x: torch.Tensor) -> torch.Tensor:
    """d/dx [x * sigmoid(x)] = sigmoid(x) * (1 + x * (1 - sigmoid(x)))."""
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """ReLU MLP with ``layers`` hidden layers of width ``hidden``."""
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        modules += [nn.Linear(dim, hidden), nn.ReLU()]
        dim = hidden
    modules.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*modules)


class TwinQ(nn.Module):
    """Two independent Q(s, a) heads; ``forward`` returns both, ``min_q`` the pessimistic one."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, hidden, layers, 1)
        self.q2 = mlp(obs_dim + act_dim, hidden, layers, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def min_q(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        q1, q2 = self(obs, action)
        return torch.minimum(q1, q2)


class ValueNetwork(nn.Module):
    """V(s), used by IQL's expectile regression."""

    def __init__(self, obs_dim: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, layers, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)
