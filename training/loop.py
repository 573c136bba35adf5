"""One training loop for every stage: progress bar, metrics, periodic evaluation, checkpoint/resume."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .distributed import DistContext
from .metrics import MetricsLogger
from .state import load_training_state, save_training_state

StepFn = Callable[[int], dict[str, "float | torch.Tensor"]]
EvalFn = Callable[[int], dict[str, float]]


@dataclass
class StageRunner:
    """Runs ``step_fn`` for ``steps`` steps, resumable from ``<run_dir>/state/<name>.safetensors``."""

    name: str
    run_dir: Path
    steps: int
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    dist: DistContext = field(default_factory=DistContext)
    log_every: int = 100
    checkpoint_every: int = 1_000
    eval_every: int = 0
    progress: bool = True
    stop_after: int | None = None  # for tests: stop (as if killed) after this many steps

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state" / f"{self.name}.safetensors"

    def run(self, step_fn: StepFn, eval_fn: EvalFn | None = None) -> int:
        """Train to ``steps`` (resuming if a state file exists); returns the step reached."""
        start = 0
        if self.state_path.exists():
            start, _ = load_training_state(
                self.state_path, modules=self.modules, optimizers=self.optimizers, generator=self.generator
            )
        logger = MetricsLogger(self.run_dir / "metrics", self.name, resume_step=start, enabled=self.dist.is_main)
        bar = None
        if self.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps, initial=start, desc=self.name, dynamic_ncols=True, mininterval=1.0)
        running: dict[str, float | torch.Tensor] = {}
        count = 0
        began = time.perf_counter()
        step = start
        try:
            while step < self.steps:
                values = step_fn(step)
                step += 1
                # Sum as given (tensors stay on the device): converting each step would make a GPU
                # wait for every step to finish; values are read only when logged.
                for key, value in values.items():
                    running[key] = running[key] + value if key in running else value
                count += 1
                if bar is not None:
                    bar.update(1)
                if step % self.log_every == 0 or step == self.steps:
                    means = {k: float(v) / count for k, v in running.items()}
                    means["steps_per_s"] = count / max(time.perf_counter() - began, 1e-9)
                    logger.log(step, means)
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in means.items() if k != "steps_per_s"})
                    running, count, began = {}, 0, time.perf_counter()
                if eval_fn is not None and self.eval_every and step % self.eval_every == 0 and step < self.steps:
                    if self.dist.is_main:
                        logger.log(step, eval_fn(step))
                    self.dist.barrier()
                if step % self.checkpoint_every == 0 or step == self.steps:
                    self.save(step)
                if self.stop_after is not None and step >= self.stop_after:
                    break
        finally:
            if bar is not None:
                bar.close()
            logger.close()
        return step

    def save(self, step: int) -> None:
        if self.dist.is_main:
            save_training_state(
                self.state_path,
                modules=self.modules,
                optimizers=self.optimizers,
                generator=self.generator,
                step=step,
            )
        self.dist.barrier()
