"""Few-step DPM-Solver++ (multistep, order 1 or 2) for a VP diffusion.

Pure functions over a noise-prediction callable: the sampler knows nothing about policies,
observations or environments.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .schedule import VPSchedule

NoisePredictor = Callable[[torch.Tensor, float], torch.Tensor]
"""eps(x_t, t): predicted noise for a batch ``x_t`` at the scalar time ``t``."""


def dpm_solver_pp(
    eps_fn: NoisePredictor,
    x_start: torch.Tensor,
    schedule: VPSchedule,
    num_steps: int,
    *,
    order: int = 2,
    t_start: float = 1.0,
    t_end: float = 1e-3,
    clip_denoised: bool = True,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """Integrate the probability-flow ODE from ``t_start`` to ``t_end`` in ``num_steps`` evaluations.

    Each step costs exactly one call of ``eps_fn``. Time points are uniform in lambda = log(alpha/sigma).
    ``clip_denoised`` clamps each data prediction to [-1, 1] (actions live in that box).
    ``lower_order_final`` takes the last step with order 1. That step shrinks the spread of the
    samples at very few steps (on an analytic Gaussian, relative covariance error 0.70 at 3 steps
    against 0.40 with a 2nd-order last step), but trained policies score better with it: on
    hopper medium-replay 58 vs 32 at 2 steps and 69 vs 66 at 3 (D4RL score, 20 episodes).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    times = schedule.lambda_grid(num_steps, t_start, t_end)
    alphas = schedule.alpha(times).tolist()
    sigmas = schedule.sigma(times).tolist()
    lambdas = schedule.log_snr_half(times).tolist()
    times = times.tolist()

    x = x_start
    prev_x0: torch.Tensor | None = None
    prev_h = 0.0
    for i in range(num_steps):
        eps = eps_fn(x, times[i])
        x0 = (x - sigmas[i] * eps) / alphas[i]
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        h = lambdas[i + 1] - lambdas[i]
        last = i == num_steps - 1
        if order == 1 or prev_x0 is None or (lower_order_final and last and num_steps < 10):
            direction = x0
        else:
            r = prev_h / h
            direction = x0 + (x0 - prev_x0) / (2.0 * r)
        x = (sigmas[i + 1] / sigmas[i]) * x - alphas[i + 1] * math.expm1(-h) * direction
        prev_x0, prev_h = x0, h
    return x
