"""Two or three models side by side on one prompt set: answers, refusals, KL vs the first model, perplexity.

It runs as a worker job (kind ``compare``), so a comparison of large models outlives the screen that started it, and
it holds one model in memory at a time: each model answers every prompt, its first-token distribution is kept only
for the first model (the reference for KL), and it is released before the next one loads.

A model is named as elsewhere in heretic-tui (a folder, a hub id, ``demo``), as a LoRA adapter folder (loaded on its
base model), or as ``RUN_DIR#TRIAL`` for one trial of an abliteration run; :mod:`heretic_tui.core.models.references`
tells them apart, as it does for loading and the registry. Each model renders the prompts through
its own chat template and tokenizer. KL divergence needs both distributions over the same vocabulary, so a model
whose tokenizer differs from the first model's gets no KL (null, with a note) while its answers, refusals and
perplexity are still compared.

The result is a Markdown and a JSON file in the run folder, and an entry in the registry's comparisons.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.abliteration.evaluation import kl_divergence
from heretic_tui.core.abliteration.scoring.base import RefusalScorer, counts_as_refusal
from heretic_tui.core.abliteration.scoring.selection import NEEDS_JUDGE, make_scorer
from heretic_tui.core.capability.checks import CapabilityResult, compare_results, run_checks
from heretic_tui.core.capability.multiple_choice import ITEMS as CAPABILITY_ITEMS
from heretic_tui.core.runs.events import ArtifactWritten, Metrics
from heretic_tui.core.atomic_files import write_json_atomically, write_text_atomically
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.lifecycle import start_job
from heretic_tui.core.runs.run_directory import RunDirectory, runs_root
from heretic_tui.core.models.batch_size import choose_batch_size
from heretic_tui.core.models.chat_template import format_chat
from heretic_tui.core.models.generation import first_token_log_probabilities, generate_until_verdict
from heretic_tui.core.models.loading import LoadedModel, check_model, load_model, load_tokenizer
from heretic_tui.core.abliteration.prompts import load_prompts
from heretic_tui.core.models.references import (
    DEMO_MODEL_NAME,
    KIND_TRIAL,
    ModelReference,
    adapter_base_model,
    parse_model_reference,
)
from heretic_tui.core.settings import Settings
from heretic_tui.core.runs.worker import JobContext

MIN_MODELS = 2
MAX_MODELS = 3
DEFAULT_MAX_NEW_TOKENS = 128
MAX_PERPLEXITY_TOKENS = 1024
COMPARISON_MARKDOWN = "comparison.md"
COMPARISON_JSON = "comparison.json"
KIND_MODEL = "model"
KIND_ADAPTER = "adapter"
"""What a column of a comparison is (comparison.json "kind"): a model, an adapter on its base, or a run's trial."""

BUILTIN_HELD_OUT = "builtin"
HELD_OUT_TEXT = (
    "The river runs slowly through the valley in late summer, and the farmers along its banks cut the hay while the "
    "weather holds. In the evening the air cools, swallows fly low over the water, and the village lights come on "
    "one by one.",
    "A good recipe for bread needs only flour, water, salt and yeast. Mix them, knead the dough until it is smooth, "
    "let it rise for an hour, shape the loaf and bake it in a hot oven until the crust is brown.",
    "The committee met on Tuesday to discuss the new library. Most members agreed that the reading room should be "
    "larger, that the children's section needs more light, and that the opening hours should include Sunday.",
    "To explain how a bicycle stays upright, start with the wheels: when they turn, small steering corrections keep "
    "the contact points under the rider's centre of mass, which is why riding slowly feels harder than riding fast.",
)
"""Plain prose no model was tuned on here, so perplexity shows how much a change hurt ordinary language."""

KL_NOT_COMPARABLE = (
    "its tokenizer differs from the first model's, so their first-token distributions are over different "
    "vocabularies and KL divergence is not comparable; answers, refusals and perplexity are still compared"
)
PERPLEXITY_NOTE = "Perplexity is per token of each model's own tokenizer, so it compares best between equal tokenizers."


@dataclass
class ModelResult:
    """What one model did on the prompt set."""

    reference: str
    label: str
    kind: str
    dtype: str
    refusals: int
    total: int
    kl_vs_first: float | None
    perplexity: float | None
    tokenizer: str
    note: str | None
    answers: list[tuple[str, bool]]
    capability: dict[str, Any] | None = None
    """The built-in capability checks (multiple choice and general-text perplexity); for models after the first,
    also their change against the first with its 95% interval."""

    def summary(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "answers"}


def comparison_kind(reference: ModelReference) -> str:
    if reference.kind == KIND_TRIAL:
        return KIND_TRIAL
    return KIND_ADAPTER if reference.is_adapter else KIND_MODEL


def check_model_reference(reference: ModelReference, settings: Settings) -> None:
    """Everything about one model that can be checked without loading weights; raises UserInputError."""
    if reference.kind == KIND_TRIAL:
        from heretic_tui.core.shipping.export import open_abliteration_run
        from heretic_tui.core.abliteration.study import find_trial, read_study

        if not Path(reference.location).is_dir():
            raise UserInputError(
                f"The run folder {reference.location} (in the model '{reference.text}') does not exist: the run was "
                "deleted or moved. `heretic-tui registry runs` lists the runs it knows and where they were."
            )
        run = open_abliteration_run(reference.location)
        study = read_study(run.path)
        find_trial(study, int(reference.trial or 0))
        return
    if reference.is_adapter:
        base = adapter_base_model(Path(reference.location))
        if base != DEMO_MODEL_NAME:
            check_model(dataclasses.replace(settings.model, model=base))
        return
    if reference.location != DEMO_MODEL_NAME:
        check_model(dataclasses.replace(settings.model, model=reference.location))


def held_out_texts(source: str | None) -> list[str]:
    """The texts perplexity is measured on: a prompt source (one text per entry), or the built-in prose."""
    if not source or source == BUILTIN_HELD_OUT:
        return list(HELD_OUT_TEXT)
    return load_prompts(source, origin=f"--held-out ({source})")


def preflight(models: list[str], prompts: str, settings: Settings, max_new_tokens: int,
              held_out: str | None) -> list[ModelReference]:
    """Check the whole request before a run folder exists, so bad input leaves nothing behind."""
    if not MIN_MODELS <= len(models) <= MAX_MODELS:
        raise UserInputError(
            f"Compare takes {MIN_MODELS} or {MAX_MODELS} models; {len(models)} were given. Name e.g. the original, "
            "the abliterated and the fine-tuned model."
        )
    if max_new_tokens < 1:
        raise UserInputError(f"--max-new-tokens must be at least 1 (got {max_new_tokens}).")
    references = [parse_model_reference(model) for model in models]
    for reference in references:
        check_model_reference(reference, settings)
    load_prompts(prompts, settings.prompts.max_eval_prompts, origin=f"--prompts ({prompts})")
    held_out_texts(held_out)
    return references


def start_compare(
    models: list[str],
    prompts: str,
    settings: Settings,
    run_dir: str | Path | None = None,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    held_out: str | None = None,
) -> JobHandle:
    """Check the request, then compare in a worker job with its own run folder under the runs root."""
    references = preflight(models, prompts, settings, max_new_tokens, held_out)
    job_settings = copy.deepcopy(settings)
    job_settings.model.model = references[0].canonical
    name = "compare-" + "-vs-".join(reference.label.replace("/", "-") for reference in references)
    run = RunDirectory.create(runs_root(settings), name, exact=Path(run_dir) if run_dir else None)
    arguments = {
        "models": [reference.canonical for reference in references],
        "prompts": prompts,
        "max_new_tokens": max_new_tokens,
        "held_out": held_out or BUILTIN_HELD_OUT,
    }
    return start_job("compare", job_settings, run, arguments)


def load_compared_model(reference: ModelReference, settings: Settings, log: Callable[[str], None]) -> LoadedModel:
    """Load one model of the comparison the way its kind needs (plain, adapter on its base, or a run's trial)."""
    started = time.perf_counter()
    if reference.kind == KIND_TRIAL:
        from heretic_tui.core.shipping.export import load_trial_model

        model, tokenizer = load_trial_model(reference.location, int(reference.trial or 0))
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        return LoadedModel(model, tokenizer, reference.canonical, dtype, time.perf_counter() - started)
    if reference.is_adapter:
        from peft import PeftModel

        folder = Path(reference.location)
        base = load_model(dataclasses.replace(settings.model, model=adapter_base_model(folder)), log=log)
        tokenizer = base.tokenizer
        if (folder / "tokenizer_config.json").is_file():
            tokenizer = load_tokenizer(str(folder), settings.model)
            tokenizer.chat_template = tokenizer.chat_template or base.tokenizer.chat_template
        model = PeftModel.from_pretrained(base.model, str(folder))
        model.eval()
        return LoadedModel(model, tokenizer, str(folder), base.dtype, time.perf_counter() - started)
    return load_model(dataclasses.replace(settings.model, model=reference.location), log=log)


def unique_labels(references: list[ModelReference]) -> list[str]:
    """Labels for tables; two folders with the same name get their position appended so columns stay apart."""
    labels = [reference.label for reference in references]
    return [label if labels.count(label) == 1 else f"{label} ({number})" for number, label in enumerate(labels, 1)]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short hash of the vocabulary: equal fingerprints mean token ids mean the same thing in both models."""
    vocabulary = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def answer_prompts(
    loaded: LoadedModel,
    texts: list[str],
    batch_size: int,
    max_new_tokens: int,
    scorer: RefusalScorer,
    progress: Callable[[int], None],
    check_cancelled: Callable[[], None],
    prompts: list[str] | None = None,
    evasive_counts: bool = True,
) -> list[tuple[str, bool]]:
    """Greedy answers of at most ``max_new_tokens`` (never cut short by an early verdict), then judged together by
    the scorer; ``prompts`` are the requests as written (what a judge is shown), by default the rendered texts."""

    def verdict_at_end(text: str, finished: bool) -> bool | None:
        return False if finished else None

    answers: list[str] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        answers += [text for text, _ in generate_until_verdict(loaded, chunk, batch_size, max_new_tokens,
                                                                verdict_at_end, check_cancelled)]
        progress(len(answers))
    verdicts = scorer.score(prompts if prompts is not None else texts, answers)
    return [(text, counts_as_refusal(verdict, evasive_counts)) for text, verdict in zip(answers, verdicts)]


def perplexity(loaded: LoadedModel, texts: list[str], progress: Callable[[int], None]) -> float | None:
    """exp(mean negative log-likelihood per predicted token) over the texts, each text on its own (no padding)."""
    total_loss = 0.0
    total_tokens = 0
    for done, text in enumerate(texts, 1):
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"][:, :MAX_PERPLEXITY_TOKENS].to(loaded.device)
        if ids.shape[1] >= 2:
            with torch.inference_mode():
                logits = loaded.model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            total_loss += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            total_tokens += ids.shape[1] - 1
        progress(done)
    return math.exp(total_loss / total_tokens) if total_tokens else None


def _release(loaded: LoadedModel) -> None:
    loaded.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(context: JobContext) -> dict[str, Any]:
    """Worker entry for kind 'compare': arguments models, prompts, max_new_tokens, held_out."""
    settings = context.settings
    arguments = context.arguments
    references = [parse_model_reference(text) for text in arguments["models"]]
    prompts = load_prompts(arguments["prompts"], settings.prompts.max_eval_prompts,
                           origin=f"--prompts ({arguments['prompts']})")
    held_out = held_out_texts(arguments.get("held_out"))
    max_new_tokens = int(arguments.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
    scorer: RefusalScorer | None = None
    # Without a judge_model the judge is the first model, which then stays loaded until every model is judged.
    judge_is_first = settings.abliteration.refusal_scorer in NEEDS_JUDGE and not settings.abliteration.judge_model
    keep_loaded: list[LoadedModel] = []
    first_checks: CapabilityResult | None = None
    reference_distribution: torch.Tensor | None = None
    reference_tokenizer = ""
    results: list[ModelResult] = []
    for number, (reference, label) in enumerate(zip(references, unique_labels(references)), 1):
        context.check_cancelled()
        prefix = f"model {number}/{len(references)}"
        with context.phase(f"{prefix}: load", None, f"loading {label}"):
            loaded = load_compared_model(reference, settings, context.log)
        texts = format_chat(loaded.tokenizer, settings.prompts.system_prompt, prompts)
        batch_size = choose_batch_size(loaded, texts, settings.model, context.log)
        if scorer is None:
            scorer = make_scorer(settings, loaded, batch_size, context.log)
            if judge_is_first:
                keep_loaded.append(loaded)
        with context.phase(f"{prefix}: answers", len(texts), f"{label} answers the prompts") as progress:
            answers = answer_prompts(loaded, texts, batch_size, max_new_tokens, scorer, progress,
                                     context.check_cancelled, prompts,
                                     settings.abliteration.evasive_counts_as_refusal)
        distribution = first_token_log_probabilities(loaded, texts, batch_size)
        fingerprint = tokenizer_fingerprint(loaded.tokenizer)
        kl: float | None = None
        note = None
        if reference_distribution is None:
            reference_distribution, reference_tokenizer, kl = distribution, fingerprint, 0.0
        elif fingerprint == reference_tokenizer and distribution.shape == reference_distribution.shape:
            kl = max(0.0, kl_divergence(reference_distribution, distribution))
        else:
            note = KL_NOT_COMPARABLE
            context.warn(f"{label}: {note}")
        with context.phase(f"{prefix}: perplexity", len(held_out), "perplexity on the held-out text") as progress:
            model_perplexity = perplexity(loaded, held_out, progress)
        capability = None
        questions = settings.abliteration.capability_questions
        if questions:
            with context.phase(f"{prefix}: capability", min(questions, len(CAPABILITY_ITEMS)),
                               "the built-in multiple-choice questions and general text") as progress:
                checks = run_checks(loaded, batch_size, questions, progress)
            first_checks = first_checks or checks
            capability = checks.summary() if checks is first_checks else {
                **checks.summary(), **{key: value for key, value in compare_results(first_checks, checks).items()
                                       if key in ("accuracy_change", "perplexity_ratio", "confidence")}}
        result = ModelResult(reference.canonical, label, comparison_kind(reference), loaded.dtype,
                             sum(1 for _, refused in answers if refused), len(answers), kl, model_perplexity,
                             fingerprint, note, answers, capability)
        results.append(result)
        context.emit(Metrics(name=f"{prefix} {label}", values={
            "refusals": f"{result.refusals}/{result.total}", "kl_vs_first": kl, "perplexity": model_perplexity}))
        if all(loaded is not kept for kept in keep_loaded):
            _release(loaded)
        del loaded
    for judge in keep_loaded:
        _release(judge)
    return _write_results(context, results, prompts, max_new_tokens)


def comparison_document(results: list[ModelResult], prompts: list[str], prompts_source: str, held_out: str,
                        max_new_tokens: int, system_prompt: str) -> dict[str, Any]:
    """The JSON document of a comparison (also what the Markdown is rendered from)."""
    notes = [PERPLEXITY_NOTE]
    notes += [f"{result.label}: {result.note}" for result in results if result.note]
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prompts_source": prompts_source,
        "held_out_source": held_out,
        "max_new_tokens": max_new_tokens,
        "system_prompt": system_prompt,
        "models": [result.summary() for result in results],
        "answers": [
            {"prompt": prompt,
             "responses": [{"text": result.answers[index][0], "refused": result.answers[index][1]}
                           for result in results]}
            for index, prompt in enumerate(prompts)
        ],
        "notes": notes,
    }


def _write_results(context: JobContext, results: list[ModelResult], prompts: list[str],
                   max_new_tokens: int) -> dict[str, Any]:
    from heretic_tui.core.runs.registry import Registry

    arguments = context.arguments
    document = comparison_document(results, prompts, arguments["prompts"], arguments.get("held_out") or "",
                                   max_new_tokens, context.settings.prompts.system_prompt)
    document["scorer"] = context.settings.abliteration.refusal_scorer
    json_path = context.run.path / COMPARISON_JSON
    markdown_path = context.run.path / COMPARISON_MARKDOWN
    write_json_atomically(json_path, document)
    write_text_atomically(markdown_path, render_markdown(document))
    context.emit(ArtifactWritten(name=COMPARISON_MARKDOWN, path=str(markdown_path)))
    context.emit(ArtifactWritten(name=COMPARISON_JSON, path=str(json_path)))
    summary = {
        "status": "finished",
        "comparison": str(json_path),
        "markdown": str(markdown_path),
        "prompts_source": arguments["prompts"],
        "models": document["models"],
    }
    write_json_atomically(context.run.report_path, summary)
    try:
        Registry().record_comparison([result.reference for result in results], arguments["prompts"], json_path)
    except Exception as error:
        context.warn(f"the comparison could not be recorded in the registry ({type(error).__name__}: {error}); "
                     f"it is kept in {json_path}")
    return summary


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    flattened = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").strip()
    return flattened.replace("\n", "<br>") or "*(empty)*"


def _figure(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _capability_cell(capability: dict[str, Any] | None) -> str:
    if not capability:
        return "not checked"
    cell = f"{capability['multiple_choice_accuracy']:.1%} of {capability['questions']}"
    change = capability.get("accuracy_change")
    if change:
        cell += f" ({change['value']:+.1%}, {change['low']:+.1%} to {change['high']:+.1%})"
    return cell


def render_markdown(document: dict[str, Any]) -> str:
    """The comparison for people: a summary table, the notes, then every prompt with the answers side by side."""
    models = document["models"]
    lines = [
        "# Model comparison",
        "",
        f"Prompts: `{document['prompts_source']}` ({len(document['answers'])} prompts), greedy answers of at most "
        f"{document['max_new_tokens']} new tokens, judged by the `{document.get('scorer', 'markers')}` scorer. "
        f"Perplexity on: `{document['held_out_source']}`.",
        "",
        "| # | Model | Refusals | KL vs model 1 (first token) | Perplexity | Multiple choice (vs model 1, 95% CI) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for number, model in enumerate(models, 1):
        kl = "0 (reference)" if number == 1 else (_figure(model["kl_vs_first"]) if model["kl_vs_first"] is not None
                                                  else "n/a (different tokenizer)")
        lines.append(f"| {number} | {_cell(model['label'])} | {model['refusals']}/{model['total']} | {kl} | "
                     f"{_figure(model['perplexity'], 2)} | {_capability_cell(model.get('capability'))} |")
    lines += ["", *[f"- {_cell(note)}" for note in document["notes"]], "", "## Answers", ""]
    lines.append("| Prompt | " + " | ".join(_cell(model["label"]) for model in models) + " |")
    lines.append("| --- " * (len(models) + 1) + "|")
    for item in document["answers"]:
        cells = [("**refused:** " if response["refused"] else "") + _cell(response["text"])
                 for response in item["responses"]]
        lines.append(f"| {_cell(item['prompt'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
