"""Turn a trained policy into a Hub-ready folder: weights, model card, results.json, rollout video; push it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from eda_policy import EDAPolicy, EvaluationResult

CARD_TEMPLATE = """---
{{ card_data }}
---

# EDA policy for {{ env_id }} trained on {{ dataset }}

An [Efficient Diffusion Alignment](https://arxiv.org/abs/2407.09024) policy made with
[eda-policy](https://github.com/eda-policy/eda-policy): a diffusion behavior model whose network
outputs a scalar energy, aligned to an IQL critic's Q-values.

```python
import gymnasium as gym
from eda_policy import EDAPolicy

policy = EDAPolicy.from_pretrained("{{ repo_id }}")
env = gym.make("{{ env_id }}")
obs, info = env.reset(seed=0)
action = policy.act(obs)
```

## Evaluation

{{ eval_table }}
{% if notes %}
{{ notes }}
{% endif %}
Protocol: {{ protocol }}

## Training

- Dataset(s): {{ dataset }}
- Network evaluations per action (default): {{ num_steps }}; best-of-N candidates: {{ num_candidates }}
- Training settings:

```json
{{ training_config }}
```
"""


def write_results(directory: Path, results: dict[str, Any]) -> Path:
    path = Path(directory) / "results.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True))
    return path


def model_card(
    policy: EDAPolicy,
    evaluation: EvaluationResult | None,
    *,
    repo_id: str,
    training_config: dict[str, Any] | None = None,
    notes: str | None = None,
) -> ModelCard:
    """A model card with machine-readable evaluation results (``model-index``); ``notes`` go under the table."""
    cfg = policy.config
    dataset = cfg.dataset_id or "unknown"
    eval_results = []
    table = "Not evaluated."
    protocol = "n/a"
    if evaluation is not None:
        metric_value = evaluation.mean_normalized if evaluation.mean_normalized is not None else evaluation.mean_return
        eval_results.append(
            EvalResult(
                task_type="reinforcement-learning",
                dataset_type=dataset,
                dataset_name=dataset,
                metric_type="normalized_score" if evaluation.mean_normalized is not None else "mean_reward",
                metric_value=round(float(metric_value), 2),
                task_name="Offline reinforcement learning",
            )
        )
        table = "| metric | mean | std |\n| --- | --- | --- |\n"
        table += f"| return | {evaluation.mean_return:.1f} | {evaluation.std_return:.1f} |\n"
        if evaluation.mean_normalized is not None:
            table += f"| D4RL normalised score | {evaluation.mean_normalized:.1f} | {evaluation.std_normalized:.1f} |\n"
        protocol = (
            f"{len(evaluation.returns)} episodes of {evaluation.env_id}, reset seeds {evaluation.seed}.."
            f"{evaluation.seed + len(evaluation.returns) - 1}, settings {json.dumps(evaluation.settings)}; "
            "normalised score = 100 (return - random) / (expert - random) with D4RL's reference returns."
        )
    card_data = ModelCardData(
        library_name="eda-policy",
        license="mit",
        tags=["reinforcement-learning", "offline-rl", "diffusion-policy", "eda", str(cfg.env_id)],
        datasets=[d for d in dataset.split("+")] if cfg.dataset_id else None,
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        env_id=cfg.env_id,
        dataset=dataset,
        repo_id=repo_id,
        eval_table=table,
        protocol=protocol,
        num_steps=cfg.num_steps,
        num_candidates=cfg.num_candidates,
        training_config=json.dumps(training_config or {}, indent=2, sort_keys=True),
        notes=notes or "",
    )


def export_policy(
    policy: EDAPolicy,
    directory: Path,
    *,
    evaluation: EvaluationResult | None,
    repo_id: str,
    training_config: dict[str, Any] | None = None,
    extra_results: dict[str, Any] | None = None,
    video: bool = True,
    video_seed: int = 0,
    notes: str | None = None,
) -> Path:
    """Write config.json, model.safetensors, README.md (model card), results.json and rollout.gif."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    card_path = directory / "README.md"
    card_path.unlink(missing_ok=True)  # save_pretrained keeps an existing card; ours replaces the default
    model_card(policy, evaluation, repo_id=repo_id, training_config=training_config, notes=notes).save(card_path)
    policy.save_pretrained(directory)
    results: dict[str, Any] = {
        "env_id": policy.config.env_id,
        "dataset_id": policy.config.dataset_id,
        "evaluation": evaluation.to_dict() if evaluation is not None else None,
    }
    if notes:
        results["notes"] = notes
    results.update(extra_results or {})
    if video:
        os.environ.setdefault("MUJOCO_GL", "egl")
        from eda_policy import record_video

        try:
            path, episode_return = record_video(policy, directory / "rollout.gif", seed=video_seed)
            results["video"] = {"file": path.name, "seed": video_seed, "return": episode_return}
        except Exception as err:  # rendering needs an OpenGL backend; the policy is still usable
            results["video"] = {"error": f"{type(err).__name__}: {err}"}
    write_results(directory, results)
    return directory


def push_folder(directory: Path, repo_id: str, *, private: bool | None = None, token: str | None = None) -> str:
    """Create the model repo if needed and upload the folder in one commit."""
    directory = Path(directory)
    EDAPolicy.from_pretrained(directory)  # refuse to publish a folder that does not load
    api = HfApi(token=token)
    repo = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(repo_id=repo.repo_id, folder_path=str(directory), repo_type="model",
                             commit_message="Upload EDA policy with eda-policy")
    return str(info)
