"""What the dashboard shows for a fine-tuning run, as text: the step line, the plan, the results, the knowledge
test side by side.

Kept apart from the screen so the wording can be read (and tested) without a terminal; every figure comes from
the run's journal (folded into :class:`RunState`) or its report.json, never from the worker directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from heretic_tui.core.api import read_json_object
from heretic_tui.tui.formatting import escape_markup, format_duration, format_figure, format_parameter_count
from heretic_tui.tui.run_state import RunState
from heretic_tui.tui.widgets.loss_chart import LossPoint

ARTIFACT_TITLES: dict[str, str] = {
    "adapter": "LoRA adapter",
    "merged_model": "Merged model",
    "report": "Report",
}
KNOWLEDGE_ANSWER_CHARACTERS = 400
CURVES: tuple[tuple[str, str, str], ...] = (
    ("loss", "Loss", "⠂ train  ● validation"),
    ("learning_rate", "Learning rate", "⠂ per step"),
    ("grad_norm", "Grad norm", "⠂ per step"),
    ("tokens_per_second", "Tokens/s", "⠂ per logged step"),
    ("anchor_divergence", "Anchor KL (general text vs the base model)", "⠂ per logged step"),
)
"""The curves the chart cycles through: (RunState name, title, legend)."""
OPTIONAL_CURVES = frozenset({"anchor_divergence"})
"""Curves only some runs have (the anchor's, when ``finetune.anchor_weight`` is on): skipped while empty."""


def loss_points(state: RunState) -> tuple[list[LossPoint], list[LossPoint]]:
    """Train and validation loss as chart points, in step order."""
    train = [LossPoint(step, loss) for step, loss in sorted(state.train_losses.items())]
    evaluation = [LossPoint(step, loss) for step, loss in sorted(state.eval_losses.items())]
    return train, evaluation


def curve_points(state: RunState, name: str) -> tuple[list[LossPoint], list[LossPoint]]:
    """The points of one curve of :data:`CURVES` (only the loss has validation points)."""
    if name == "loss":
        return loss_points(state)
    values = state.training_curves.get(name, {})
    return [LossPoint(step, value) for step, value in sorted(values.items())], []


def step_summary(state: RunState) -> list[str]:
    """The figures of the latest logged step: n/N, losses, learning rate, throughput."""
    step = state.latest_step
    total = state.step_total
    if step is None:
        return [f"step 0/{total}"] if total else []
    parts = [f"step {step.step}/{total or '?'}"]
    if state.train_losses:
        parts.append(f"loss {format_figure(state.train_losses[max(state.train_losses)])}")
    if state.eval_losses:
        parts.append(f"eval {format_figure(state.eval_losses[max(state.eval_losses)])}")
    if step.tokens_per_second:
        parts.append(f"{step.tokens_per_second:,.0f} tok/s")
    if step.learning_rate is not None:
        parts.append(f"lr {step.learning_rate:.2e}")
    if step.grad_norm is not None:
        parts.append(f"grad {format_figure(step.grad_norm)}")
    if step.anchor_divergence is not None:
        parts.append(f"anchor KL {format_figure(step.anchor_divergence)}")
    return parts


def plan_markup(state: RunState) -> list[str]:
    plan = state.metrics.get("plan")
    if not plan:
        return ["[b]Plan[/b]  [$text-muted]shown once the data is prepared[/]"]
    lines = [
        "[b]Plan[/b]",
        f"  examples {plan.get('train_examples')} train · {plan.get('validation_examples')} validation · "
        f"{format_figure(plan.get('tokens'))} tokens",
        f"  steps {plan.get('steps')} ({plan.get('steps_per_epoch')}/epoch × {format_figure(plan.get('epochs'))}) · "
        f"effective batch {plan.get('effective_batch')} · length {plan.get('sequence_length')}",
        f"  trainable {format_parameter_count(plan.get('trainable_parameters'))} of "
        f"{format_parameter_count(plan.get('total_parameters'))} · memory ≈ "
        f"{format_figure(plan.get('memory_total_gb'), 3)} GB",
    ]
    if plan.get("estimated_seconds") is not None:
        lines.append(f"  time ≈ {format_duration(plan.get('estimated_seconds'))} "
                     f"({format_figure(plan.get('seconds_per_step'), 3)} s/step)")
    for problem in plan.get("problems") or []:
        lines.append(f"  [$warning]⚠ {escape_markup(str(problem))}[/]")
    return lines


def results_markup(state: RunState) -> list[str]:
    lines: list[str] = []
    data = state.metrics.get("data")
    if data:
        lines += ["", "[b]Data[/b]", f"  {escape_markup(str(data.get('formats') or '?'))} → mode "
                  f"{escape_markup(str(data.get('mode')))} · {data.get('duplicates_removed', 0)} duplicates removed"
                  f" · {data.get('skipped_files', 0)} files skipped"]
        if data.get("recipe"):
            lines.append(f"  recipe {escape_markup(str(data.get('recipe')))} · "
                         f"{data.get('held_out_questions', 0)} questions held out · "
                         f"{data.get('retention_examples', 0)} general chat examples mixed in")
    evaluation = state.metrics.get("evaluation")
    if evaluation:
        lines += [
            "",
            "[b]Evaluation[/b]",
            f"  eval loss   {format_figure(evaluation.get('eval_loss_before'))} → "
            f"[$success]{format_figure(evaluation.get('eval_loss_after'))}[/]",
            f"  perplexity  {format_figure(evaluation.get('perplexity_before'))} → "
            f"[$success]{format_figure(evaluation.get('perplexity_after'))}[/]",
            f"  train loss  {format_figure(evaluation.get('train_loss'))}",
        ]
        if evaluation.get("general_perplexity_before") is not None:
            lines.append(f"  general text perplexity {format_figure(evaluation.get('general_perplexity_before'))} → "
                         f"{format_figure(evaluation.get('general_perplexity_after'))}")
    knowledge = state.metrics.get("knowledge_test")
    if knowledge and knowledge.get("accuracy_before") is not None:
        lines.append(f"  knowledge   {knowledge['accuracy_before']:.0%} → [$success]"
                     f"{(knowledge.get('accuracy_after') or 0):.0%}[/] of {knowledge.get('prompts')} questions "
                     "answered right")
    elif knowledge:
        lines.append(f"  knowledge   {format_figure(knowledge.get('score_before'), 3)} → "
                     f"{format_figure(knowledge.get('score_after'), 3)} similarity on {knowledge.get('prompts')} prompts")
    smoke = state.metrics.get("smoke_test")
    if smoke:
        verdict = "[$success]passed[/]" if smoke.get("passed") else "[$error]failed[/]"
        lines.append(f"  smoke test  {verdict} (template identical {format_figure(smoke.get('chat_template_identical'))},"
                     f" agreement {format_figure(smoke.get('agreement'), 3)})")
    if state.artifacts:
        lines += ["", "[b]Files[/b]"]
        for name, path in state.artifacts.items():
            title = ARTIFACT_TITLES.get(name, name)
            lines.append(f"  [$success]✔[/] {escape_markup(title)}: {escape_markup(path)}")
        lines.append("  [$text-muted]u: upload the merged model (or the adapter) · f: fine-tune again from it[/]")
    return lines


def details_markup(state: RunState) -> str:
    return "\n".join(plan_markup(state) + results_markup(state))


def read_knowledge_items(report_path: Path) -> list[dict[str, Any]]:
    """The knowledge test's prompts with the answers before and after training, from report.json."""
    knowledge = read_json_object(report_path).get("knowledge_test")
    items = knowledge.get("items", []) if isinstance(knowledge, dict) else []
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def knowledge_table(items: list[dict[str, Any]]) -> Table | Text:
    """Prompt, expected answer, and the answers before and after training, side by side."""
    if not items:
        return Text("The knowledge test (answers before and after training, side by side) appears here when the run "
                    "finishes.", style="dim")
    table = Table(title="Knowledge test", title_justify="left", expand=True, show_lines=True)
    for column in ("Prompt", "Expected", "Before", "After"):
        table.add_column(column, ratio=1, overflow="fold")
    for item in items:
        cells = [str(item.get(key, ""))[:KNOWLEDGE_ANSWER_CHARACTERS] for key in ("prompt", "expected", "before",
                                                                                    "after")]
        for index, key in ((2, "correct_before"), (3, "correct_after")):
            if isinstance(item.get(key), bool):
                cells[index] = ("✔ " if item[key] else "✘ ") + cells[index]
        table.add_row(*cells)
    return table


def best_model_folder(state: RunState) -> str | None:
    """The folder a person most likely wants to ship or train further: the merged model, else the adapter."""
    return state.artifacts.get("merged_model") or state.artifacts.get("adapter")
