"""Latency of ``EDAPolicy.act()`` against a reference sampler written the way the authors' release samples.

What is timed (median wall-clock milliseconds per call, after a warm-up):

* ``act``: this package's ``policy.act(obs)`` for num_steps in 1, 2, 3, 5, 10, 15 network evaluations
  (input checks, normalisation, DPM-Solver++ with the observation embedding computed once and the
  action gradient of f from the network's closed-form backward, no autograd graph; clipping;
  conversion to numpy).
* ``reference``: 15 evaluations of DPM-Solver (order 2, multistep) where, as in the authors' release,
  every step recomputes the full network ``policy.energy(a, obs, t)`` with parameters that require
  grad and takes the action-gradient with ``torch.autograd.grad(..., create_graph=True)``, i.e. it
  builds the graph for a double backward it never uses. It does the same input conversion and
  output mapping as ``act()``, so both columns are a complete "observation in, action out" call.
  The release also draws 4 candidates and keeps the best by Q; that is NOT included here, which
  makes the reference faster than the release and the reported speed-up conservative.

Both are measured at batch 1 (one observation, as in a control loop) and batch 256, with 1 and 2
torch threads. Variants are timed round-robin within each (threads, batch) cell so slow drifts of
the machine affect all of them alike.

    python benchmarks/act_latency.py                       # paper-size untrained Hopper-v5 policy
    python benchmarks/act_latency.py --checkpoint checkpoints/hopper-medium-replay --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from eda_policy import EDAPolicy, __version__
from eda_policy.observations import observation_batch
from eda_policy.sampler import dpm_solver_pp

STEP_COUNTS = (1, 2, 3, 5, 10, 15)
BATCH_SIZES = (1, 256)
THREAD_COUNTS = (1, 2)
REFERENCE_NFE = 15
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "act_latency.json"


def reference_act(policy: EDAPolicy, obs: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """One act() the release's way: 15 full forward + create_graph backward passes, order-2 DPM-Solver."""
    cfg = policy.config
    batch, single = observation_batch(obs, cfg.obs_dim)
    obs_norm = policy.normalize_obs(batch.to(policy.device))
    n = obs_norm.shape[0]
    x = torch.randn(n, cfg.act_dim, device=policy.device, generator=generator)

    def eps_fn(action_t: torch.Tensor, t: float) -> torch.Tensor:
        a = action_t.detach().requires_grad_(True)
        t_vec = torch.full((n,), t, device=policy.device)
        f = policy.energy(a, obs_norm, t_vec)  # whole network, embeddings included, every step
        (grad,) = torch.autograd.grad(f.sum(), a, create_graph=True)
        return -policy.schedule.sigma(t_vec)[:, None] * grad

    # The release does not clip its data predictions; the final action is clipped for the env here.
    actions = dpm_solver_pp(
        eps_fn, x, policy.schedule, REFERENCE_NFE, order=2, t_end=cfg.t_min, clip_denoised=False
    )
    out = policy.to_env_action(actions.detach()).cpu().numpy().astype(np.float32, copy=False)
    return out[0] if single else out


def median_ms(calls: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    """Median milliseconds of each call, timed round-robin after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in samples.items()}


def load_policy(checkpoint: str | None) -> EDAPolicy:
    if checkpoint:
        return EDAPolicy.from_pretrained(checkpoint)
    torch.manual_seed(0)
    return EDAPolicy.from_env("Hopper-v5").eval()  # EDAConfig defaults = the paper's architecture


def run(policy: EDAPolicy, repeats: int, repeats_large: int, warmup: int, thread_counts: tuple[int, ...] = THREAD_COUNTS) -> dict:
    cfg = policy.config
    for p in policy.parameters():  # the reference differentiates a graph through trainable weights
        p.requires_grad_(True)
    rng = np.random.default_rng(0)
    results = {"act": [], "reference": []}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for batch in BATCH_SIZES:
            # One observation is passed as (obs_dim,), as in a control loop; a batch as (N, obs_dim).
            obs = rng.normal(size=(cfg.obs_dim,) if batch == 1 else (batch, cfg.obs_dim))
            generator = torch.Generator().manual_seed(0)
            calls: dict[str, Callable[[], object]] = {
                f"act/{k}": (lambda k=k: policy.act(obs, generator=generator, num_steps=k)) for k in STEP_COUNTS
            }
            calls["reference"] = lambda: reference_act(policy, obs, generator)
            n_rep = repeats if batch == 1 else repeats_large
            ms = median_ms(calls, n_rep, warmup)
            for k in STEP_COUNTS:
                results["act"].append(dict(threads=threads, batch=batch, num_steps=k, ms=ms[f"act/{k}"]))
            results["reference"].append(dict(threads=threads, batch=batch, num_steps=REFERENCE_NFE, ms=ms["reference"]))
            print(f"  threads={threads} batch={batch}: done ({n_rep} repeats)", flush=True)
    return results


def lookup(rows: list[dict], **key) -> float:
    return next(r["ms"] for r in rows if all(r[k] == v for k, v in key.items()))


def markdown_table(results: dict) -> str:
    header = "| threads | batch | " + " | ".join(f"NFE {k}" for k in STEP_COUNTS) + f" | reference (NFE {REFERENCE_NFE}, create_graph) |"
    lines = [header, "|" + " --- |" * (len(STEP_COUNTS) + 3)]
    for threads in sorted({r["threads"] for r in results["act"]}):
        for batch in BATCH_SIZES:
            cells = [f"{lookup(results['act'], threads=threads, batch=batch, num_steps=k):.2f}" for k in STEP_COUNTS]
            ref = lookup(results["reference"], threads=threads, batch=batch)
            lines.append(f"| {threads} | {batch} | " + " | ".join(cells) + f" | {ref:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder or Hub repo id (default: untrained paper-size Hopper-v5 policy)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help=f"where to write the results (default {DEFAULT_JSON})")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per variant at batch 1")
    parser.add_argument("--repeats-large", type=int, default=20, help="timed calls per variant at batch 256")
    parser.add_argument("--threads", type=int, nargs="+", default=list(THREAD_COUNTS), help="torch thread counts to time")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds before timing")
    args = parser.parse_args()

    load_before = os.getloadavg()
    policy = load_policy(args.checkpoint)
    cfg = policy.config
    n_params = sum(p.numel() for p in policy.energy.parameters())
    print(f"policy: {args.checkpoint or 'EDAPolicy.from_env(Hopper-v5), paper architecture'}; "
          f"energy network {n_params:,} parameters; default num_steps={cfg.num_steps}", flush=True)
    results = run(policy, args.repeats, args.repeats_large, args.warmup, tuple(args.threads))
    torch.set_num_threads(1)

    default_nfe = cfg.num_steps
    ms1 = lookup(results["act"], threads=1, batch=1, num_steps=default_nfe)
    ref1 = lookup(results["reference"], threads=1, batch=1)
    ms256 = lookup(results["act"], threads=1, batch=256, num_steps=default_nfe)
    ref256 = lookup(results["reference"], threads=1, batch=256)
    report = {
        "default_nfe": default_nfe,
        "ms_batch1": ms1,
        "reference_ms_batch1": ref1,
        "speedup_batch1": ref1 / ms1,
        "ms_batch256": ms256,
        "reference_ms_batch256": ref256,
        "speedup_batch256": ref256 / ms256,
        "same_nfe_speedup_batch1": ref1 / lookup(results["act"], threads=1, batch=1, num_steps=REFERENCE_NFE),
        "grid": results["act"],
        "reference": results["reference"],
        "reference_description": (
            f"DPM-Solver order 2, {REFERENCE_NFE} evaluations, full network forward + autograd.grad("
            "create_graph=True) every step, parameters requiring grad, 1 candidate (no best-of-4)"
        ),
        "headline_setting": "1 torch thread; ms is the median per act() call",
        "policy": args.checkpoint or "untrained EDAPolicy.from_env('Hopper-v5') with EDAConfig defaults",
        "energy_parameters": n_params,
        "repeats": {"batch1": args.repeats, "batch256": args.repeats_large, "warmup_rounds": args.warmup},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "eda_policy": __version__,
            # Other processes compete for the cores; a 1-minute load above ~0 means contended timings.
            "loadavg_1min_before": load_before[0],
            "loadavg_1min_after": os.getloadavg()[0],
        },
    }
    print()
    print("Median ms per act() call")
    print()
    print(markdown_table(results))
    print()
    print(f"default NFE {default_nfe}, batch 1, 1 thread: {ms1:.2f} ms vs reference {ref1:.2f} ms "
          f"-> {report['speedup_batch1']:.1f}x faster")
    print(f"batch 256, 1 thread: {ms256:.1f} ms vs reference {ref256:.1f} ms -> {report['speedup_batch256']:.1f}x faster")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
