"""The real thing: the headless CLI starts a worker, the run writes report.json, the adapter and the merged model
reload from disk and generate, a worker killed with SIGKILL resumes from its checkpoint, and a cancel saves one."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from heretic_tui.cli.main import main
from heretic_tui.core.runs.events import JobCancelled, JobFinished, JobStarted, LogLine, TrainingStep
from heretic_tui.core.finetuning.checkpoints import complete_checkpoints
from heretic_tui.core.finetuning.job import start_finetune
from heretic_tui.core.runs.handle import JobHandle
from finetune_helpers import finetune_settings

pytestmark = pytest.mark.slow


def generate(model, tokenizer, question: str) -> str:
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(**batch, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_headless_cli_trains_merges_and_the_outputs_reload(tiny_model: Path, documents: Path, tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    from peft import PeftModel

    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main(["finetune", "--model", str(tiny_model), "--data", str(documents), "--headless", "--run-dir",
              str(run_dir), "--max-steps", "24", "--lora-rank", "8", "--merge",
              "--set", "finetune.chunk_tokens=24", "--set", "finetune.chunk_overlap=6",
              "--set", "finetune.checkpoint_steps=8", "--set", "finetune.logging_steps=4",
              "--set", "finetune.gradient_checkpointing=false", "--set", "finetune.learning_rate=0.01",
              "--set", "finetune.knowledge_test_tokens=12"])
    printed = capfd.readouterr().err
    assert exited.value.code == 0, printed
    assert "plan: train_examples" in printed and "eval loss" in printed and "merged model:" in printed

    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    for key in ("train_loss", "eval_loss_before", "eval_loss_after", "perplexity_before", "perplexity_after",
                "adapter_dir", "merged_dir", "examples"):
        assert key in report
    assert report["eval_loss_after"] < report["eval_loss_before"]
    assert report["mode"] == "instruct" and set(report["examples"]) == {"train", "validation"}
    assert report["data"]["recipe"] and report["data"]["retention"]["examples"] > 0
    assert {entry["format"] for entry in report["data"]["formats"]} == {"text", "markdown", "pdf"}
    assert report["smoke_test"]["passed"] and report["smoke_test"]["chat_template_identical"]

    merged = Path(report["merged_dir"])
    assert (merged / "chat_template.jinja").is_file() and (merged / "heretic.json").is_file()
    assert json.loads((merged / "heretic.json").read_text())["method"] == "finetune"
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    merged_model = AutoModelForCausalLM.from_pretrained(str(merged))
    merged_answer = generate(merged_model, tokenizer, "What is the capital of Zorbia?")

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    adapter_model = PeftModel.from_pretrained(base, report["adapter_dir"])
    adapter_answer = generate(adapter_model, AutoTokenizer.from_pretrained(report["adapter_dir"]),
                              "What is the capital of Zorbia?")
    assert merged_answer.strip() and merged_answer == adapter_answer


def follow_to_end(handle: JobHandle) -> list:
    return list(handle.events(poll_seconds=0.02))


def test_a_killed_worker_resumes_from_its_last_checkpoint(tiny_model: Path, documents: Path, tmp_path: Path) -> None:
    settings = finetune_settings(tiny_model, [str(documents)], max_steps=150, checkpoint_steps=10, logging_steps=5)
    run_dir = tmp_path / "run"
    handle = start_finetune(settings, run_dir)
    checkpoints = run_dir / "checkpoints"
    deadline = time.time() + 120
    while not complete_checkpoints(checkpoints):
        assert handle.alive() and time.time() < deadline, (run_dir / "worker.log").read_text()
        time.sleep(0.01)
    worker = psutil.Process(handle.run.read_worker()["pid"])
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    handle.process.wait(timeout=30)
    killed_at = max(int(path.name.split("-")[1]) for path in complete_checkpoints(checkpoints))
    assert killed_at < 150

    resumed = start_finetune(settings, run_dir, resume=True)
    events = follow_to_end(resumed)
    assert isinstance(events[-1], JobFinished), events[-1]
    assert isinstance(events[0], JobStarted) and events[0].resumed
    logs = [item.message for item in events if isinstance(item, LogLine)]
    assert any(message.startswith("resuming from checkpoint-") for message in logs)
    assert any("examples prepared earlier in this run" in message for message in logs)
    steps = [item.step for item in events if isinstance(item, TrainingStep) and item.loss is not None]
    assert steps[0] > killed_at and steps[-1] == 150
    report = resumed.run.read_report()
    assert report["resumed_from"] == f"checkpoint-{killed_at}" and report["steps"] == 150
    assert report["eval_loss_after"] < report["eval_loss_before"]


def test_cancel_saves_a_checkpoint_and_ends_the_job_as_cancelled(tiny_model: Path, documents: Path,
                                                                tmp_path: Path) -> None:
    settings = finetune_settings(tiny_model, [str(documents)], max_steps=400, checkpoint_steps=100, logging_steps=1)
    handle = start_finetune(settings, tmp_path / "run")
    events = []
    for item in handle.events(poll_seconds=0.02):
        events.append(item)
        if isinstance(item, TrainingStep) and item.loss is not None and item.step >= 3:
            handle.request_cancel()
    assert isinstance(events[-1], JobCancelled)
    assert handle.wait(timeout=30) == 130
    logs = [item.message for item in events if isinstance(item, LogLine)]
    stopped = next(message for message in logs if message.startswith("cancel requested"))
    step = int(stopped.split("step ")[1].split()[0])
    assert 3 <= step < 400
    assert [path.name for path in complete_checkpoints(tmp_path / "run" / "checkpoints")] == [f"checkpoint-{step}"]
