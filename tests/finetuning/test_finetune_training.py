"""Training in-process on a tiny model: the loss on held-out data goes down, events carry the figures the dashboard
draws, and the adapter reloads from disk and answers like the trained model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from heretic_tui.core.runs.events import JobWarning, LogLine, Metrics, TrainingStep
from finetune_helpers import FACTS, finetune_settings, many_chat_rows, run_in_process, write_jsonl

pytestmark = pytest.mark.slow


def test_chat_training_lowers_validation_loss_with_our_assistant_mask(tiny_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", many_chat_rows(4))
    settings = finetune_settings(tiny_model, [str(data)], max_steps=24, validation_fraction=0.2)
    summary, run_directory = run_in_process(settings, tmp_path)

    assert summary["eval_loss_after"] < summary["eval_loss_before"]
    assert summary["perplexity_after"] < summary["perplexity_before"]
    assert summary["examples"] == {"train": 19, "validation": 5}
    report = run_directory.read_report()
    assert report["mode"] == "chat" and report["steps"] == 24
    assert report["smoke_test"]["passed"], report["smoke_test"]
    assert report["knowledge_test"]["score_after"] > report["knowledge_test"]["score_before"], report["knowledge_test"]
    assert report["warnings"] == [] and summary["warnings"] == []
    assert (Path(summary["adapter_dir"]) / "adapter_model.safetensors").is_file()
    assert summary["merged_dir"] is None

    events = run_directory.read_events()
    logs = [item.message for item in events if isinstance(item, LogLine)]
    assert any("mask computed from the chat template" in line for line in logs)
    steps = [item for item in events if isinstance(item, TrainingStep)]
    trained = [item for item in steps if item.loss is not None]
    assert trained[0].step == 1 and trained[-1].step == 24 and all(item.total_steps == 24 for item in steps)
    assert all(item.learning_rate is not None and item.grad_norm is not None for item in trained)
    assert all(item.tokens_per_second and item.tokens_per_second > 0 for item in trained)
    assert trained[-1].eta_seconds == 0
    evaluated = [item for item in steps if item.eval_loss is not None]
    evaluated_steps = [item.step for item in evaluated]
    assert {0, 8, 16, 24} <= set(evaluated_steps) and len(set(evaluated_steps)) >= 10, evaluated_steps
    assert all(item.perplexity and item.perplexity > 1 for item in evaluated)
    plans = [item.values for item in events if isinstance(item, Metrics) and item.name == "plan"]
    assert {"train_examples", "tokens", "steps", "effective_batch", "memory_total_gb"} <= set(plans[0])
    assert "estimated_seconds" in plans[-1]
    checkpoints = sorted(path.name for path in (run_directory.path / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) <= 3 and "checkpoint-24" in checkpoints


def test_trl_masks_templates_with_generation_markers_and_dora_packing_work(marked_model: Path,
                                                                            tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", many_chat_rows(3))
    settings = finetune_settings(marked_model, [str(data)], max_steps=12, checkpoint_steps=6, dora=True,
                                 packing=True, max_sequence_length=128, knowledge_test_prompts=1)
    summary, run_directory = run_in_process(settings, tmp_path)
    assert summary["eval_loss_after"] < summary["eval_loss_before"]
    logs = [item.message for item in run_directory.read_events() if isinstance(item, LogLine)]
    assert any("TRL assistant-only loss" in line and "(DoRA)" in line for line in logs)
    plan = run_directory.read_report()["plan"]
    assert plan["sequences"] < plan["train_examples"]


def test_documents_train_as_instruction_pairs_with_checkpointed_activations(tiny_model: Path, documents: Path,
                                                                         tmp_path: Path) -> None:
    settings = finetune_settings(tiny_model, [str(documents)], training_mode="instruct",
                                 document_recipe="continuation", max_steps=16,
                                 validation_fraction=0.2, merge_adapter=True, gradient_checkpointing=True)
    summary, run_directory = run_in_process(settings, tmp_path)
    assert summary["eval_loss_after"] < summary["eval_loss_before"]
    report = run_directory.read_report()
    assert report["mode"] == "instruct" and report["smoke_test"]["passed"]
    assert Path(summary["merged_dir"]).is_dir()
    prompts = [item["prompt"] for item in report["knowledge_test"]["items"]]
    assert all(prompt.startswith(("Continue", "What comes next", "Here is the start")) for prompt in prompts)
    logs = [item.message for item in run_directory.read_events() if isinstance(item, LogLine)]
    assert any("TRL completion-only loss" in line for line in logs)


def test_a_run_stopped_after_training_finishes_from_its_final_checkpoint(tiny_model: Path, documents: Path,
                                                                          tmp_path: Path) -> None:
    settings = finetune_settings(tiny_model, [str(documents)], max_steps=8, checkpoint_steps=4)
    first, run_directory = run_in_process(settings, tmp_path)
    run_directory.report_path.unlink()
    (run_directory.path / "state.json").write_text('{"before": {"eval_loss": 4.', encoding="utf-8")
    second, _ = run_in_process(settings, tmp_path, resume=True)
    report = run_directory.read_report()
    assert report["resumed_from"] == "checkpoint-8" and report["steps"] == 8
    assert second["eval_loss_before"] == pytest.approx(first["eval_loss_before"])
    assert second["eval_loss_after"] == pytest.approx(first["eval_loss_after"])
    warnings = [item.message for item in run_directory.read_events() if isinstance(item, JobWarning)]
    assert "state.json could not be read back (damaged or empty); the model is measured again before training" \
        in warnings


def test_resuming_a_finished_run_mid_epoch_trains_no_extra_step(tiny_model: Path, tmp_path: Path) -> None:
    """The Trainer resumed from a checkpoint that holds every step, inside an epoch, runs one step more."""
    from safetensors.torch import load_file

    data = tmp_path / "facts.txt"
    data.write_text(" ".join(FACTS * 8), encoding="utf-8")
    settings = finetune_settings(tiny_model, [str(data)], training_mode="text", max_steps=8, checkpoint_steps=4)
    first, run_directory = run_in_process(settings, tmp_path)
    plan = run_directory.read_report()["plan"]
    assert plan["steps"] == 8 and 8 % plan["steps_per_epoch"] != 0, plan
    adapter = Path(first["adapter_dir"]) / "adapter_model.safetensors"
    trained = load_file(str(adapter))
    run_directory.report_path.unlink()
    second, _ = run_in_process(settings, tmp_path, resume=True)
    report = run_directory.read_report()
    assert report["resumed_from"] == "checkpoint-8" and report["steps"] == 8
    assert sorted(path.name for path in (run_directory.path / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-4", "checkpoint-8"]
    resumed = load_file(str(adapter))
    assert trained.keys() == resumed.keys()
    assert all(torch.equal(trained[name], resumed[name]) for name in trained)
    assert second["eval_loss_after"] == first["eval_loss_after"]
    logs = [item.message for item in run_directory.read_events() if isinstance(item, LogLine)]
    assert "resuming from checkpoint-8, which already holds all 8 steps" in logs


def test_an_8bit_base_is_prepared_like_a_4bit_one() -> None:
    from types import SimpleNamespace

    from heretic_tui.core.finetuning.training import is_quantized_base

    assert is_quantized_base(SimpleNamespace(is_loaded_in_8bit=True))
    assert is_quantized_base(SimpleNamespace(is_loaded_in_4bit=True))
    assert not is_quantized_base(SimpleNamespace())
