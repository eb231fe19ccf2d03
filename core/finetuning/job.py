"""The fine-tuning pipeline as a worker job: load, data, plan, evaluate, train, save, merge, smoke test, report.

The parent side (:func:`preflight`, :func:`start_finetune`) checks everything that needs no weights before a run
folder exists, so bad input exits with code 2 and leaves nothing behind. The worker side (:func:`run`) keeps what a
resumed run needs in the run folder: the prepared examples (``data/``), the "before" measurements
(``state.json``) and the checkpoints, so a run killed at any point continues where it was.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
from pathlib import Path
from typing import Any

import torch

from heretic_tui.core.runs.events import ArtifactWritten, Metrics
from heretic_tui.core.finetuning.callbacks import JournalCallback, perplexity
from heretic_tui.core.finetuning.checkpoints import last_checkpoint, remove_incomplete_checkpoints
from heretic_tui.core.finetuning.data import DATA_FOLDER, PreparedData, data_metrics, prepare_data, preview
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.finetuning.evaluation import (
    KnowledgeItem,
    generate_answers,
    knowledge_items,
    question_items,
    knowledge_report,
    knowledge_scores,
    smoke_prompt,
    smoke_test,
    validation_loss_problem,
)
from heretic_tui.core.finetuning.merge import (
    full_precision_dtype,
    load_adapter_model,
    load_base_model,
    merge_adapter,
    save_adapter,
)
from heretic_tui.core.finetuning.modules import (
    check_chunk_settings,
    meta_model,
    resolve_target_modules,
    sequence_length,
    window_sizes,
)
from heretic_tui.core.finetuning.plan import ADAM_STATE_BYTES, ADAPTER_WEIGHT_BYTES, TrainingPlan, make_plan
from heretic_tui.core.finetuning.knowledge import KnowledgeQuestion, read_questions
from heretic_tui.core.finetuning.anchoring import anchor_source
from heretic_tui.core.finetuning.retention import general_perplexity
from heretic_tui.core.finetuning.storage import MEGABYTE, storage_failures
from heretic_tui.core.finetuning.sources import read_sources
from heretic_tui.core.finetuning.training import (
    CHECKPOINT_FOLDER,
    build_trainer,
    finished_checkpoint_state,
    restore_finished_training,
)
from heretic_tui.core.atomic_files import read_json_object, write_json_atomically
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.lifecycle import prepare_run, start_job
from heretic_tui.core.models.loading import check_model, load_model, resolve_model_location
from heretic_tui.core.settings import Settings
from heretic_tui.core.runs.worker import JobContext

JOB_KIND = "finetune"
STATE_FILE = "state.json"
ADAPTER_FOLDER = "adapter"
MERGED_FOLDER = "merged"


def preflight(settings: Settings) -> None:
    """Every check that needs no weights: model, template, lengths, target modules, data. Raises UserInputError."""
    from heretic_tui.core.models.demo import DEMO_MODEL_NAME, demo_model_path, is_demo_model_built

    finetune = settings.finetune
    check_chunk_settings(finetune)
    check_model(settings.model)
    name = settings.model.model
    if name != DEMO_MODEL_NAME or is_demo_model_built(demo_model_path()):
        location = resolve_model_location(name)
        config, model = meta_model(location, settings.model)
        sequence_length(finetune, config, name)
        resolve_target_modules(model, finetune.target_modules, name)
    read_sources(finetune.training_data, hub=settings.hub)
    if finetune.report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise UserInputError(
            "finetune.report_to is 'tensorboard', but the tensorboard package is not installed. Install it "
            "(pip install tensorboard) or set finetune.report_to to 'none'; the dashboard shows the same curves."
        )
    if finetune.retention_data:
        read_sources(finetune.retention_data, hub=settings.hub)
    if finetune.anchor_data:
        read_sources(finetune.anchor_data, hub=settings.hub)
    if finetune.knowledge_questions:
        read_questions(finetune.knowledge_questions)
    if finetune.question_model and not (Path(finetune.question_model).expanduser() / "config.json").is_file():
        load_question_model(finetune.question_model)


def start_finetune(settings: Settings, run_dir: Path | None = None, resume: bool = False) -> JobHandle:
    """Start (or resume) a fine-tuning run in a worker process; bad input is reported before a folder is made."""
    run = prepare_run(JOB_KIND, settings, run_dir, resume, preflight, "a fine-tuning")
    return start_job(JOB_KIND, settings, run, {"resume": resume})


def load_question_model(folder: str) -> tuple[Any, Any]:
    """The teacher that writes the questions (finetune.question_model): a local model folder, loaded on the CPU
    or GPU the run uses, in its own dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise UserInputError(
            f"finetune.question_model is {folder}, which is not a local model folder (no config.json there). Give "
            "the folder of a chat model, or leave the setting empty to let the model being trained write the "
            "questions."
        )
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype="auto")
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, AutoTokenizer.from_pretrained(str(path))


def _knowledge_items(finetune: Any, prepared: PreparedData) -> list[KnowledgeItem]:
    """The user's questions file, else the held-out synthesized questions, else a sample of training examples."""
    if finetune.knowledge_questions:
        return question_items(read_questions(finetune.knowledge_questions))
    held_out = prepared.summary.get("held_out") or []
    if held_out:
        return question_items([KnowledgeQuestion(row["question"], row["answer"], tuple(row.get("aliases", ())))
                               for row in held_out])
    return knowledge_items(prepared.train, finetune.knowledge_test_prompts, finetune.finetune_seed)


def _read_state(context: JobContext, path: Path) -> dict[str, Any]:
    """What an earlier attempt measured; a damaged file is measured again rather than stopping the resume."""
    state = read_json_object(path)
    if path.exists() and not state:
        context.warn(f"{path.name} could not be read back (damaged or empty); the model is measured again before "
                     "training")
    before = state.get("before")
    if before is not None and not (isinstance(before, dict) and isinstance(before.get("answers"), list)):
        context.warn(f"{path.name} holds no usable 'before' measurements; the model is measured again")
        state.pop("before")
    return state


def _prepared_data(context: JobContext, model: Any, tokenizer: Any, length: int) -> PreparedData:
    folder = context.run.path / DATA_FOLDER
    prepared = PreparedData.load(folder)
    if prepared is not None:
        context.log(f"using the {len(prepared.train) + len(prepared.validation)} examples prepared earlier in this run")
        return prepared
    window = window_sizes(context.settings.finetune, length)
    finetune = context.settings.finetune
    teacher = load_question_model(finetune.question_model) if finetune.question_model else None
    if finetune.document_recipe == "questions" and finetune.question_generator != "template":
        writer = finetune.question_model or "the model being trained"
        context.log(f"documents become question/answer pairs written by {writer} (greedy, batched), and "
                    f"{finetune.retention_share:.0%} general chat is mixed in: this generates text, minutes on a CPU")
    try:
        prepared = prepare_data(finetune, tokenizer, window, context.check_cancelled, context.settings.hub, model,
                                teacher)
    finally:
        del teacher
        gc.collect()
    prepared.save(folder)
    for skipped in prepared.summary.get("skipped", []):
        context.warn(f"skipped {skipped['path']}: {skipped['reason']}")
    ignored = prepared.summary.get("ignored_files", [])
    if ignored:
        context.log(f"ignored {len(ignored)} files of other types, e.g. {ignored[0]}")
    return prepared


def checkpoint_bytes(plan: TrainingPlan) -> int:
    """About what one checkpoint needs on disk: the adapter, its AdamW state (two moments), a little metadata."""
    return plan.trainable_parameters * (ADAPTER_WEIGHT_BYTES + ADAM_STATE_BYTES) + MEGABYTE


def _remove_half_written_checkpoints(context: JobContext, folder: Path) -> None:
    for removed in remove_incomplete_checkpoints(folder):
        context.log(f"removed {removed.name}: its save failed half-way, so it cannot be resumed from")


def _last_logged_loss(log_history: list[dict[str, Any]]) -> float | None:
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return float(losses[-1]) if losses else None


def run(context: JobContext) -> dict[str, Any]:
    import datasets

    datasets.disable_progress_bars()
    settings = context.settings
    finetune = settings.finetune
    run_path = context.run.path
    state_path = run_path / STATE_FILE
    state = _read_state(context, state_path)

    with context.phase("load", None, f"loading {settings.model.model}"):
        loaded = load_model(settings.model, lambda stage, done, total: context.progress(f"load: {stage}", done, total),
                            context.log)
        context.log(f"loaded {loaded.location} as {loaded.dtype} on {loaded.device} in {loaded.seconds:.1f}s")
    length = sequence_length(finetune, loaded.model.config, settings.model.model)
    targets = resolve_target_modules(loaded.model, finetune.target_modules, settings.model.model)
    context.check_cancelled()

    with context.phase("data", None, "reading, detecting, cleaning and splitting the training data"):
        prepared = _prepared_data(context, loaded.model, loaded.tokenizer, length)
    context.emit(Metrics(name="data", values=data_metrics(prepared)))
    if finetune.preview_examples:
        lines = preview(loaded.tokenizer, prepared.train, finetune.preview_examples)
        context.emit(Metrics(name="preview", values={"recipe": prepared.summary.get("recipe", ""),
                                                      **{f"example {number}": line
                                                         for number, line in enumerate(lines, start=1)}}))
    context.check_cancelled()

    checkpoint_folder = run_path / CHECKPOINT_FOLDER
    for removed in remove_incomplete_checkpoints(checkpoint_folder):
        context.warn(f"removed {removed.name}: it was being written when the run stopped")
    resume_from = last_checkpoint(checkpoint_folder)
    plan_values: dict[str, Any] = {}
    callback = JournalCallback(context.emit, context.check_cancelled, checkpoint_folder, finetune.keep_checkpoints,
                               plan_values, context.log)
    if finetune.anchor_data and finetune.anchor_weight <= 0:
        context.warn("finetune.anchor_data is set but finetune.anchor_weight is 0, so the anchor is off; set "
                     "finetune.anchor_weight (1 is a good start) to use it")
    anchor: tuple[list[str], str] = ([], "off")
    if finetune.anchor_weight > 0:
        anchor = anchor_source(finetune, loaded.tokenizer, length, context.check_cancelled, settings.hub)
    with context.phase("prepare", None, "tokenizing the examples and applying LoRA"):
        trainer, chosen = build_trainer(loaded.model, loaded.tokenizer, prepared, finetune, targets, length,
                                        checkpoint_folder, callback, anchor)
    context.log(f"training format: {chosen.description}; LoRA rank {finetune.lora_rank} on {', '.join(targets)}"
                + (" (DoRA)" if finetune.dora else ""))
    plan = make_plan(trainer, len(prepared.train), len(prepared.validation), finetune.epochs, finetune.max_steps,
                     length, finetune.gradient_checkpointing)
    if finetune.early_stopping_patience and chosen.validation is None:
        plan.problems.append("finetune.early_stopping_patience is set, but there is no validation set to stop on "
                             "(finetune.validation_fraction is 0, or the data is too small to split): the run "
                             "trains for every planned step. Set finetune.validation_fraction above 0.")
    plan_values.update(plan.metrics())
    plan_values["recipe"] = prepared.summary.get("recipe", "")
    context.emit(Metrics(name="plan", values=dict(plan_values)))
    for problem in plan.problems:
        context.warn(f"plan: {problem}")

    items = _knowledge_items(finetune, prepared)
    smoke_messages = smoke_prompt(items)
    before = state.get("before")
    if before is None:
        with context.phase("evaluate_before", None, "validation loss and knowledge test of the model before training"):
            eval_before = trainer.evaluate()["eval_loss"] if chosen.validation is not None else None
            answers = generate_answers(trainer.model, loaded.tokenizer, [item.prompt for item in items],
                                       finetune.knowledge_test_tokens)
            general_before = general_perplexity(trainer.model, loaded.tokenizer)
        before = {"eval_loss": eval_before, "answers": answers, "general_perplexity": general_before}
        state["before"] = before
        write_json_atomically(state_path, state)
    for item, answer in zip(items, before["answers"]):
        item.before = answer
    context.check_cancelled()

    with context.phase("train", plan.steps, f"{plan.steps} steps, effective batch {plan.effective_batch}"):
        finished = finished_checkpoint_state(resume_from, plan.steps) if resume_from is not None else None
        if finished is not None:
            context.log(f"resuming from {resume_from.name}, which already holds all {finished.global_step} steps")
            restore_finished_training(trainer, resume_from, finished)
            train_loss_average = next((entry["train_loss"] for entry in reversed(finished.log_history)
                                       if "train_loss" in entry), None)
        else:
            if resume_from is not None:
                context.log(f"resuming from {resume_from.name}")
            with storage_failures(checkpoint_folder, "write a checkpoint into", checkpoint_bytes(plan),
                                  lambda: _remove_half_written_checkpoints(context, checkpoint_folder)):
                train_loss_average = trainer.train(
                    resume_from_checkpoint=str(resume_from) if resume_from else None).training_loss
    context.check_cancelled()

    with context.phase("evaluate_after", None, "validation loss and knowledge test of the trained model"):
        eval_after = trainer.evaluate()["eval_loss"] if chosen.validation is not None else None
        answers = generate_answers(trainer.model, loaded.tokenizer, [item.prompt for item in items],
                                   finetune.knowledge_test_tokens)
        reference_answer = generate_answers(trainer.model, loaded.tokenizer, [smoke_messages],
                                            finetune.knowledge_test_tokens)[0]
        general_after = general_perplexity(trainer.model, loaded.tokenizer)
    for item, answer in zip(items, answers):
        item.after = answer
    scores = knowledge_scores(items)
    train_loss = _last_logged_loss(trainer.state.log_history)
    evaluation = {
        "train_loss": train_loss,
        "eval_loss_before": before["eval_loss"],
        "eval_loss_after": eval_after,
        "perplexity_before": perplexity(before["eval_loss"]),
        "perplexity_after": perplexity(eval_after),
        "general_perplexity_before": before.get("general_perplexity"),
        "general_perplexity_after": general_after,
    }
    context.emit(Metrics(name="evaluation", values=evaluation))
    warnings = list(plan.problems)
    outcome = validation_loss_problem(before["eval_loss"], eval_after)
    if outcome is not None:
        warnings.append(outcome)
        context.warn(outcome)
    context.emit(Metrics(name="knowledge_test", values={**scores, "prompts": len(items)}))
    for number, item in enumerate(items, start=1):
        verdict = "" if not item.judged else (f" [before {'right' if item.correct_before else 'wrong'}, after "
                                              f"{'right' if item.correct_after else 'wrong'}]")
        context.log(f"knowledge test {number}{verdict}: {item.prompt_text[:200]!r}\n  expected: "
                    f"{item.expected[:200]!r}\n  before:   {item.before[:200]!r}\n  after:    {item.after[:200]!r}")

    output_metadata = {
        "run_dir": str(run_path),
        "mode": prepared.mode,
        "lora": {"rank": finetune.lora_rank, "alpha": finetune.lora_alpha, "dropout": finetune.lora_dropout,
                 "target_modules": targets, "dora": finetune.dora},
        "metrics": evaluation,
    }
    with context.phase("save_adapter", None, "writing the adapter"):
        with storage_failures(run_path, "write the adapter into", checkpoint_bytes(plan)):
            adapter_dir = save_adapter(trainer.model, loaded.location, settings.model, run_path / ADAPTER_FOLDER,
                                       output_metadata)
    context.emit(ArtifactWritten(name="adapter", path=str(adapter_dir)))
    best_checkpoint = trainer.state.best_model_checkpoint
    steps_done = trainer.state.global_step
    trained_dtype = loaded.dtype
    del trainer
    loaded.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    merged_dir = None
    dtype = full_precision_dtype(trained_dtype)
    if finetune.merge_adapter:
        with context.phase("merge", None, "merging the adapter into a full model folder"):
            merged_bytes = plan.total_parameters * torch.empty((), dtype=dtype).element_size()
            with storage_failures(run_path, "write the merged model into", merged_bytes):
                merged_dir = merge_adapter(loaded.location, settings.model, adapter_dir, run_path / MERGED_FOLDER,
                                           dtype, settings.output.shard_size, output_metadata)
        context.emit(ArtifactWritten(name="merged_model", path=str(merged_dir)))
    context.check_cancelled()

    with context.phase("smoke_test", None, "reloading the result from disk and checking its chat template"):
        smoke = _smoke_test(settings, loaded, adapter_dir, merged_dir, dtype, smoke_messages, reference_answer)
    if smoke["passed"]:
        context.log(f"smoke test passed: the reloaded {'merged model' if merged_dir else 'adapter'} renders the chat "
                    "template as before and answers as the trained model did")
    else:
        failure = (f"smoke test failed: template identical {smoke['chat_template_identical']}, finite logits "
                   f"{smoke['finite_logits']}, agreement with the trained model {smoke['agreement']:.2f}; answer "
                   f"{smoke['answer'][:120]!r}")
        warnings.append(failure)
        context.warn(failure)
    context.emit(Metrics(name="smoke_test", values={key: smoke[key] for key in
                                                    ("passed", "chat_template_identical", "finite_logits",
                                                     "agreement")}))

    report = {
        "model": settings.model.model,
        "model_location": loaded.location,
        "dtype": trained_dtype,
        "mode": prepared.mode,
        **evaluation,
        "train_loss_average": train_loss_average,
        "adapter_dir": str(adapter_dir),
        "merged_dir": str(merged_dir) if merged_dir else None,
        "examples": {"train": len(prepared.train), "validation": len(prepared.validation)},
        "steps": steps_done,
        "best_checkpoint": best_checkpoint,
        "resumed_from": resume_from.name if resume_from else None,
        "plan": plan_values,
        "data": prepared.summary,
        "target_modules": targets,
        "knowledge_test": {**scores, "items": knowledge_report(items)},
        "smoke_test": smoke,
        "warnings": warnings,
    }
    write_json_atomically(context.run.report_path, report)
    context.emit(ArtifactWritten(name="report", path=str(context.run.report_path)))
    return {key: report[key] for key in ("train_loss", "eval_loss_before", "eval_loss_after", "perplexity_before",
                                         "perplexity_after", "adapter_dir", "merged_dir", "examples", "warnings")}


def _smoke_test(settings: Settings, loaded: Any, adapter_dir: Path, merged_dir: Path | None, dtype: torch.dtype,
                messages: list[dict[str, str]], reference_answer: str) -> dict[str, Any]:
    """Reload what was written (merged folder, or base + adapter) and compare it with the trained model."""
    from transformers import AutoTokenizer

    if merged_dir is not None:
        local = dataclasses.replace(settings.model, model=str(merged_dir), revision="", chat_template="")
        model = load_base_model(str(merged_dir), local, dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    else:
        model = load_adapter_model(loaded.location, settings.model, adapter_dir, dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    try:
        return smoke_test(model, tokenizer, loaded.tokenizer, messages, reference_answer,
                          settings.finetune.knowledge_test_tokens)
    finally:
        del model
        gc.collect()
