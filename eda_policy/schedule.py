"""Variance-preserving (VP) diffusion schedule with a linear beta(t), continuous time t in [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VPSchedule:
    """log alpha_t = -(beta_max - beta_min) t^2 / 4 - beta_min t / 2, sigma_t = sqrt(1 - alpha_t^2)."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -(self.beta_max - self.beta_min) * t**2 / 4.0 - self.beta_min * t / 2.0

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def sigma_at(self, t: float) -> float:
        """sigma_t for a Python float t (no tensor work on the sampling hot path)."""
        log_alpha = -(self.beta_max - self.beta_min) * t * t / 4.0 - self.beta_min * t / 2.0
        return math.sqrt(-math.expm1(2.0 * log_alpha))

    def log_snr_half(self, t: torch.Tensor) -> torch.Tensor:
        """lambda_t = log(alpha_t / sigma_t), the half log signal-to-noise ratio."""
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(-torch.expm1(2.0 * log_alpha))

    def time_from_lambda(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`log_snr_half`."""
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2.0 * lam)
        delta = self.beta_max - self.beta_min
        disc = self.beta_min**2 / 4.0 - delta * log_alpha
        return (torch.sqrt(disc) - self.beta_min / 2.0) / (delta / 2.0)

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """a_t = alpha_t a + sigma_t eps, with ``t`` broadcast over trailing dimensions."""
        t = t.reshape(t.shape + (1,) * (x0.dim() - t.dim()))
        return self.alpha(t) * x0 + self.sigma(t) * noise

    def lambda_grid(self, num_steps: int, t_start: float, t_end: float) -> torch.Tensor:
        """``num_steps + 1`` times from ``t_start`` down to ``t_end``, uniform in lambda."""
        ends = torch.tensor([t_start, t_end], dtype=torch.float64)
        lam = self.log_snr_half(ends)
        grid = torch.linspace(float(lam[0]), float(lam[1]), num_steps + 1, dtype=torch.float64)
        times = self.time_from_lambda(grid)
        times[0], times[-1] = t_start, t_end
        return times

