"""export_policy: the Hub folder a training run produces (weights, model card, results.json)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from huggingface_hub import ModelCard

from conftest import make_tiny_policy
from eda_policy import EDAPolicy, evaluate_policy
from training.publish import export_policy


def test_export_writes_a_loadable_folder_with_card_results_and_notes(tmp_path: Path) -> None:
    policy = make_tiny_policy(seed=5, has_critic=True, num_candidates=2, ref_min_score=-20.272305, ref_max_score=3234.3)
    evaluation = evaluate_policy(policy, num_episodes=2, seed=7)
    notes = "Known limit: this tiny policy is untrained."
    folder = export_policy(policy, tmp_path / "exported", evaluation=evaluation, repo_id="someone/eda-tiny",
                           training_config={"seed": 0}, extra_results={"timings": {"behavior_s": 1.0}},
                           video=False, notes=notes)

    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md", "results.json"}
    card = ModelCard.load(folder / "README.md")
    assert notes in card.text
    [result] = card.data.eval_results
    assert result.metric_type == "normalized_score"
    assert abs(result.metric_value - evaluation.mean_normalized) < 0.01
    results = json.loads((folder / "results.json").read_text())
    assert results["notes"] == notes
    assert results["evaluation"]["returns"] == evaluation.to_dict()["returns"]
    assert results["timings"] == {"behavior_s": 1.0}

    loaded = EDAPolicy.from_pretrained(folder)
    for name, tensor in policy.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_export_without_notes_leaves_no_notes(tmp_path: Path) -> None:
    policy = make_tiny_policy(seed=6)
    folder = export_policy(policy, tmp_path / "plain", evaluation=None, repo_id="someone/eda-plain", video=False)
    assert "notes" not in json.loads((folder / "results.json").read_text())
    assert "Not evaluated." in ModelCard.load(folder / "README.md").text
