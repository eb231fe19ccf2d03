"""Write docs/screens.md: a text capture of each main screen, from the same fixed scenes as the snapshot tests.

Run from the repository root: ``python tests/tui/capture_screens.py [OUTPUT]`` (default docs/screens.md). The
scene (the committed recording of real jobs, a tiny model cache, a fixed clock and memory probe, UTC) is the
snapshot tests' own, placed the same way (a fresh folder as long as ``SCENE_ROOT``, shown under that name), so the
document shows exactly what the accepted screenshots show, as plain text that reads well in a terminal and in a
README.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE)]

from recorded_runs import FIXED_NOW, Scene, scene_folder, shown_as_scene_root, write_screen_scene  # noqa: E402
from tui_helpers import FixedResourceProbe, screen_text, screen_words, wait_for  # noqa: E402

from heretic_tui.core.runs.events import TrainingStep, TrialFinished  # noqa: E402
from heretic_tui.core.runs.journal import read_journal  # noqa: E402
from heretic_tui.core.settings import Settings  # noqa: E402
from heretic_tui.tui.app import HereticApp  # noqa: E402
from heretic_tui.tui.finetune_choices import data_entries  # noqa: E402
from heretic_tui.tui.screens.dashboard import DashboardScreen  # noqa: E402
from heretic_tui.tui.screens.lineage import LineageScreen  # noqa: E402
from heretic_tui.tui.screens.upload import UploadScreen  # noqa: E402
from heretic_tui.tui.screens.runs import RunsScreen  # noqa: E402
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen  # noqa: E402

DOCUMENT = ROOT / "docs" / "screens.md"

Scene_ = Callable[[Any], Awaitable[None]]
scene: Scene


async def until(pilot: Any, condition: Callable[[], Any], what: str) -> None:
    await wait_for(pilot, condition, f"the capture waited for {what}")
    await pilot.pause(0.3)


def table_rows(pilot: Any, selector: str, count: int) -> Callable[[], bool]:
    return lambda: pilot.app.screen.query_one(selector).row_count == count


async def home(pilot: Any) -> None:
    await until(pilot, table_rows(pilot, "#recent-runs", 4), "four recent runs")


async def wizard_basic(pilot: Any) -> None:
    await pilot.press("n", "b")
    await until(pilot, lambda: pilot.app.screen.query_one("#basic-trials").region.height, "the basic form")


async def wizard_advanced(pilot: Any) -> None:
    await pilot.press("n", "a")
    await until(pilot, lambda: pilot.app.focused is not None and pilot.app.focused.id, "a focused field")


async def wizard_summary(pilot: Any) -> None:
    await pilot.press("n", "b")
    await until(pilot, lambda: pilot.app.screen.query_one("#basic-trials").region.height, "the basic form")
    pilot.app.screen.query_one("#basic-trials").value = "60"
    await until(pilot, lambda: pilot.app.screen.values["optimization.trials"] == 60, "the wizard to take 60 trials")
    await pilot.press("ctrl+n")
    await until(pilot, lambda: "Trials      60 " in screen_text(pilot.app), "the summary of a 60-trial run")
    pilot.app.screen.query_one("#config-path").value = "/etc/heretic-tui/config.toml"
    await pilot.pause()


def dashboard(role: str) -> Scene_:
    async def show(pilot: Any) -> None:
        run = scene.path(role)
        trials = len({item.number for item in read_journal(run / "events.jsonl").events
                      if isinstance(item, TrialFinished)})
        pilot.app.open_dashboard(run)
        await until(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen)
                    and len(pilot.app.screen.state.finished_trials) == trials, f"{trials} trials of {run.name}")

    return show


async def trial_actions(pilot: Any) -> None:
    path = scene.path("finished")
    await dashboard("finished")(pilot)
    state = pilot.app.screen.state
    best = state.best_trial()
    pilot.app.push_screen(TrialActionsScreen(path, best.number, best, best.number in state.pareto))
    await until(pilot, lambda: isinstance(pilot.app.screen, TrialActionsScreen), "the trial's actions")


async def runs(pilot: Any) -> None:
    await pilot.app.push_screen(RunsScreen())
    await until(pilot, table_rows(pilot, "#runs-table", 4), "four runs")


async def model_browser(pilot: Any) -> None:
    await pilot.press("b")
    await until(pilot, table_rows(pilot, "#models-table", 2), "two models")


async def finetune_wizard(pilot: Any) -> None:
    await pilot.press("f", "b")
    await until(pilot, lambda: pilot.app.screen.query_one("#basic-data"), "the fine-tune wizard")
    pilot.app.screen.query_one("#basic-data").value = str(scene.models)
    await until(pilot, lambda: pilot.app.screen.values["finetune.training_data"] == data_entries(str(scene.models)),
                "the fine-tune wizard to take the data folder")


def finetune_dashboard(role: str) -> Scene_:
    async def show(pilot: Any) -> None:
        run = scene.path(role)
        step = max(item.step for item in read_journal(run / "events.jsonl").events if isinstance(item, TrainingStep))
        pilot.app.open_dashboard(run)
        await until(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen)
                    and pilot.app.screen.state.latest_step is not None
                    and pilot.app.screen.state.latest_step.step == step, f"step {step} of {run.name}")

    return show


async def upload(pilot: Any) -> None:
    await pilot.app.push_screen(UploadScreen(scene.models / "base-model"))
    await until(pilot, lambda: pilot.app.screen.query_one("#upload-repo"), "the upload form")
    pilot.app.screen.query_one("#upload-repo").value = "alice/base-model-heretic"
    await until(pilot, lambda: "huggingface.co/alice/base-model-heretic" in screen_words(pilot.app),
                "the repository check")


async def lineage(pilot: Any) -> None:
    pilot.app.settings.output.runs_directory = str(scene.path("lineage-study").parent)
    await pilot.app.push_screen(LineageScreen(scene.path("lineage-finetune") / "merged"))
    await until(pilot, lambda: pilot.app.screen.chain, "the lineage chain")


SCENES: list[tuple[str, str, Scene_, tuple[int, int]]] = [
    ("Home", "Recent runs with their status, and every action.", home, (80, 24)),
    ("Wizard: basic", "Five questions; everything else keeps its default.", wizard_basic, (80, 24)),
    ("Wizard: advanced", "Every setting from core/settings.py with its help, default and inline validation.",
     wizard_advanced, (80, 24)),
    ("Wizard: summary", "What will run, what differs from the defaults, where to save the config.", wizard_summary,
     (80, 24)),
    ("Dashboard (running, 80x24)", "Re-attached to a live run: phases, trial n/N with ETA, the Pareto plot, trials.",
     dashboard("running"), (80, 24)),
    ("Dashboard (running, 160x48)", "The same run in a large terminal: memory and the worker log appear.",
     dashboard("running"), (160, 48)),
    ("Dashboard (failed)", "A failed run keeps its error, the last log lines, and offers resume.",
     dashboard("failed"), (120, 36)),
    ("Trial actions", "Export merged or as an adapter, chat, compare with the original, more trials.", trial_actions,
     (80, 24)),
    ("Runs", "Every run folder: open, resume, delete (with confirmation).", runs, (80, 24)),
    ("Model browser", "HF cache, model folders and run outputs, read from metadata only.", model_browser, (120, 30)),
    ("Fine-tune wizard: basic", "Model, data, preset (quick / balanced / thorough), output folder.", finetune_wizard,
     (80, 24)),
    ("Fine-tune dashboard (running)", "Step n/N, loss, tokens/s, ETA, the live loss chart and the plan.",
     finetune_dashboard("finetune-running"), (80, 24)),
    ("Fine-tune dashboard (finished)", "Knowledge test side by side, evaluation before/after, the files written.",
     finetune_dashboard("finetune"), (160, 48)),
    ("Upload", "Folder checked first, repository name checked inline, private by default, token never shown.",
     upload, (80, 24)),
    ("Lineage", "Base → abliterated → fine-tuned, from the registry (rebuilt from the run folders).", lineage,
     (120, 30)),
]


async def capture(settings: Settings, show: Scene_, size: tuple[int, int]) -> str:
    app = HereticApp(settings=settings, clock=lambda: FIXED_NOW, resource_probe=FixedResourceProbe())
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.2)
        await show(pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.5)
        lines = [strip.text.rstrip() for strip in app.screen._compositor.render_strips()]
    return shown_as_scene_root("\n".join(lines), scene.root)


KEYS = """## Keys

Every key is also a command in the palette (ctrl+p), which lists the current screen's keys too. F1 shows the
keys of the focused screen.

| Where | Key | Action |
| --- | --- | --- |
| everywhere | ctrl+p | command palette: every action by name |
| everywhere | ctrl+q | quit (running jobs keep running) |
| home | n | new abliteration run (wizard) |
| home | b | model browser |
| home | r | all runs |
| home | c | chat with the configured model |
| home | f | fine-tune wizard |
| home | u | upload a model folder |
| home | enter | open the highlighted run's dashboard |
| home | q | quit |
| wizard | b / a | basic or advanced (first step) |
| wizard | ctrl+n | next (to the summary) |
| wizard | esc | one step back, then leave |
| wizard | ctrl+s | save the settings to the config file (comments kept, .bak written) |
| wizard | ctrl+r | start the run (model and prompts are checked first) |
| dashboard | c | cancel the run, after a confirmation (graceful: the study is saved) |
| dashboard | k | kill a worker that did not stop after a cancel |
| dashboard | d / esc | detach: back home, the run keeps going |
| dashboard | m | more trials: continue the study up to a larger total |
| dashboard | r | resume a cancelled or failed run |
| dashboard | a / enter | actions for the highlighted trial |
| dashboard | s | sort the trials by the next column (or click a header) |
| dashboard | l | show the worker log instead of the trials (narrow terminals) |
| dashboard | e | the full error and the last log lines of a failed run |
| trial actions | e | export the merged model to a folder |
| trial actions | l | export a LoRA adapter to a folder |
| trial actions | c | chat with the trial's model |
| trial actions | v | compare answers with the original model |
| trial actions | f | fine-tune the trial's model (exported first if needed) |
| trial actions | m | more trials |
| runs | o / enter | open the run's dashboard |
| runs | r | resume |
| runs | x | delete, after a confirmation |
| runs | g | refresh |
| model browser | enter | the model's actions (as `heretic-tui ./model`) |
| model browser | a / c | abliterate / chat with the highlighted model |
| model browser | f / u / l | fine-tune / upload / lineage of the highlighted model |
| model actions | f / u / l | fine-tune / upload / lineage |
| fine-tune dashboard | u / f | upload the result / fine-tune it further |
| upload | ctrl+u | start the upload (enter in the token field looks up the user name) |
| lineage | g | rebuild the registry from the run folders and show again |
| model browser | g | rescan |
| chat | enter | send |
| chat | ctrl+x | stop the answer |
| chat | ctrl+l | clear the conversation |
| chat | ctrl+e | edit the system prompt |
| compare | ctrl+r | run the comparison job |

## After an SSH drop

Runs live in their own worker process and keep going when the terminal or the connection goes away. Start
`heretic-tui` again and open the run from the home screen (or `heretic-tui attach RUN_DIR`): the dashboard is
rebuilt from the run's `events.jsonl` and then follows it live. A worker that died meanwhile shows as failed with
its last error and log lines, and `r` resumes the study from its completed trials.
"""


def main() -> None:
    global scene
    os.environ["TZ"] = "UTC"
    time.tzset()
    document = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCUMENT
    root = scene_folder()
    try:
        scene = write_screen_scene(root)
        os.environ.update(scene.environment())
        os.environ.pop("HF_TOKEN", None)
        write_document(document, scene.settings())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_document(document: Path, settings: Settings) -> None:
    parts = [
        "# Screens",
        "",
        "Text captures of heretic-tui's main screens, made by `python tests/tui/capture_screens.py` from the same",
        "recorded runs as the snapshot tests (real jobs on the demo model, times shifted). Colours are lost in text;",
        "the SVG snapshots in `tests/tui/__snapshots__/` show them.",
        "",
    ]
    for title, description, show, size in SCENES:
        text = asyncio.run(capture(settings, show, size))
        parts += [f"## {title}", "", f"{description} ({size[0]}x{size[1]})", "", "```text", text, "```", ""]
    parts.append(KEYS)
    document.parent.mkdir(parents=True, exist_ok=True)
    document.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {document}")


if __name__ == "__main__":
    main()
