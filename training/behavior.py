"""Stage 1: behavior pretraining of the scalar-energy diffusion model (BDM loss)."""

from __future__ import annotations

import torch

from eda_policy.networks import EnergyNetwork
from eda_policy.schedule import VPSchedule


def behavior_loss(
    energy: EnergyNetwork,
    schedule: VPSchedule,
    obs: torch.Tensor,
    actions: torch.Tensor,
    *,
    t_min: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E || -sigma_t grad_a f(a_t, s, t) - eps ||^2, summed over action dims, mean over the batch.

    ``obs`` are normalised observations, ``actions`` lie in [-1, 1]. The gradient of f is taken
    with ``create_graph=True`` so the loss can be differentiated again (double backward).
    """
    n = actions.shape[0]
    t = torch.rand(n, device=actions.device, generator=generator) * (1.0 - t_min) + t_min
    noise = torch.randn(actions.shape, device=actions.device, generator=generator)
    noisy = schedule.add_noise(actions, t, noise)
    eps_pred = energy.noise_prediction(noisy, obs, t, schedule.sigma(t), create_graph=True)
    return (eps_pred - noise).pow(2).sum(dim=-1).mean()
