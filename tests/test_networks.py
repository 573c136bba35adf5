"""The closed-form action gradient used for sampling equals autograd's."""

from __future__ import annotations

import pytest
import torch

from eda_policy import EDAConfig, EDAPolicy


@pytest.mark.parametrize(
    "sizes",
    [dict(), dict(hidden_dim=64, num_blocks=2, ff_mult=2, action_embed_dim=16, obs_embed_dim=24, time_embed_dim=8)],
)
def test_closed_form_action_gradient_matches_autograd(sizes: dict) -> None:
    torch.manual_seed(0)
    policy = EDAPolicy(EDAConfig(obs_dim=5, act_dim=2, **sizes)).double().eval()
    with torch.no_grad():  # non-trivial LayerNorm affine parameters, so their backward is exercised
        for block in policy.energy.blocks:
            block.norm.weight.add_(0.3 * torch.randn_like(block.norm.weight))
            block.norm.bias.add_(0.3 * torch.randn_like(block.norm.bias))
    action = torch.randn(9, 2, dtype=torch.float64)
    obs = torch.randn(9, 5, dtype=torch.float64)
    t = torch.rand(9, dtype=torch.float64)
    obs_emb, time_emb = policy.energy.condition(obs, t)
    leaf = action.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(policy.energy.energy_from_condition(leaf, obs_emb, time_emb).sum(), leaf)
    with torch.no_grad():
        got = policy.energy.action_gradient(action, obs_emb, time_emb)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_sampling_builds_no_autograd_graph() -> None:
    torch.manual_seed(0)
    policy = EDAPolicy(EDAConfig(obs_dim=5, act_dim=2, hidden_dim=32, num_blocks=1, ff_mult=2))
    actions = policy.sample_normalized(torch.randn(4, 5), num_steps=3)
    assert actions.grad_fn is None and not actions.requires_grad
    assert all(p.grad is None for p in policy.parameters())
