"""Benchmarks of lm-evaluation-harness (the optional ``eval`` extra) on a model heretic-tui has already loaded.

The harness runs in this process through its own Hugging Face wrapper (``HFLM``) around the loaded model, so a trial
is measured with its edit applied (in the weights or through the hooks) without writing a model folder first, and
the original and the trial share one load. lm-eval is imported only here and only when a command asks for it, so
everything else works without the extra.

It runs offline, always: Hub and datasets offline mode are switched on for the duration, so a task whose data is
neither local (``dataset_path: json`` with ``data_files``, say) nor already in the datasets cache fails before any
model work with one paragraph that names the task and how to cache it, instead of reaching for the network halfway
through an evaluation. Tasks come from ``--include-path`` folders first; lm-eval's own few thousand task files are
indexed only when a requested name is not found there, because indexing them costs seconds.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heretic_tui.core.atomic_files import describe_storage_error, is_storage_error
from heretic_tui.core.errors import HereticError, StorageError, UserInputError
from heretic_tui.core.models.loading import LoadedModel

HARNESS_DISTRIBUTION = "lm-eval"
INSTALL_COMMAND = "pip install 'heretic-tui[eval]'"
AUTOMATIC_BATCH_SIZE = "auto"
DEFAULT_FILTER_SUFFIX = ",none"
"""lm-eval names a metric ``acc,none`` when no answer filter applies; the report keeps the plain name then."""
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
LOCAL_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow"})
"""datasets' builders for files on disk: a task on one of them reads no Hub dataset, so a failure is a wrong path."""
BOOTSTRAP_ITERATIONS = 1000
"""Resamples for the standard errors of metrics that need bootstrapping (lm-eval's default 100000 takes minutes)."""


def harness_version() -> str:
    """The installed lm-eval's version, or the one-paragraph "not installed" error (exit 2)."""
    try:
        version = importlib.metadata.version(HARNESS_DISTRIBUTION)
        import lm_eval  # noqa: F401
    except (importlib.metadata.PackageNotFoundError, ImportError):
        raise UserInputError(
            f"lm-evaluation-harness (the '{HARNESS_DISTRIBUTION}' package) is not installed, and `evaluate` runs its "
            f"tasks. Install it with: {INSTALL_COMMAND}. The built-in capability checks (multiple choice and "
            "perplexity, in compare and in every abliteration report) need nothing extra."
        ) from None
    return version


@dataclass(frozen=True)
class HarnessRequest:
    """Which tasks to run and how; the same request is used for the original and the edited model."""

    tasks: tuple[str, ...]
    include_paths: tuple[Path, ...] = ()
    limit: int | None = None
    """At most this many examples per task (None: all of them)."""
    num_fewshot: int | None = None
    """Examples shown before each question (None: each task's own default)."""
    batch_size: int | str = AUTOMATIC_BATCH_SIZE
    max_batch_size: int = 64

    def describe(self) -> dict[str, Any]:
        """The request as the report records it next to the results (the numbers depend on it)."""
        return {"tasks": list(self.tasks), "limit": self.limit, "num_fewshot": self.num_fewshot}


def parse_task_names(text: str) -> tuple[str, ...]:
    """``--tasks`` as names (comma-separated, also repeated), without blanks or repeats, in the given order."""
    names = [name.strip() for name in text.split(",")]
    unique = tuple(dict.fromkeys(name for name in names if name))
    if not unique:
        raise UserInputError(
            f"--tasks {text!r} names no task. Give lm-eval task names separated by commas, e.g. --tasks "
            "arc_easy,hellaswag (their data must be cached), or your own task YAML with --include-path."
        )
    return unique


def check_include_paths(paths: Sequence[str | Path]) -> tuple[Path, ...]:
    folders = tuple(Path(path).expanduser().resolve() for path in paths)
    for folder in folders:
        if not folder.is_dir():
            raise UserInputError(
                f"--include-path {folder} is not a folder. Name a folder of lm-eval task YAML files (each with "
                "'task:', 'dataset_path:' and the doc_to_* fields), or leave --include-path out."
            )
    return folders


@contextmanager
def offline_hub() -> Iterator[None]:
    """Hub and datasets offline mode for the block, also for libraries that read the flag when they were imported."""
    import datasets.config
    import huggingface_hub.constants

    saved_environment = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    saved_flags = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
                   datasets.config.HF_DATASETS_OFFLINE)
    os.environ.update({name: "1" for name in OFFLINE_VARIABLES})
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
         datasets.config.HF_DATASETS_OFFLINE) = saved_flags


def _task_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) and Path(name).expanduser().is_file()


def task_manager(request: HarnessRequest) -> Any:
    """lm-eval's task index: the include paths alone when they hold every requested task, else with the built-ins."""
    from lm_eval.tasks import TaskManager

    paths = [str(path) for path in request.include_paths]
    if paths:
        manager = TaskManager(include_path=paths, include_defaults=False)
        if all(name in manager.all_tasks or _task_file(name) for name in request.tasks):
            return manager
    return TaskManager(include_path=paths or None)


def _unknown_task(name: str, manager: Any) -> UserInputError:
    close = difflib.get_close_matches(name, manager.all_tasks, n=3)
    hint = f" Close names: {', '.join(close)}." if close else ""
    return UserInputError(
        f"lm-eval knows no task called {name!r}.{hint} `lm-eval ls tasks` lists its tasks; a task of your own is a "
        "YAML file in a folder you pass with --include-path (or the YAML file's path itself in --tasks)."
    )


def _uncached_task(name: str, task_config: dict[str, Any], error: BaseException) -> UserInputError:
    dataset = task_config.get("dataset_path") or "its dataset"
    if dataset in LOCAL_BUILDERS:
        return UserInputError(
            f"The data files of the lm-eval task {name!r} cannot be read ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'not found'}). Check dataset_kwargs.data_files in its "
            "YAML: each split names an existing file (an absolute path, or one relative to the folder you run "
            "heretic-tui in)."
        )
    subset = task_config.get("dataset_name")
    dataset_text = f"{dataset!r}" + (f" (subset {subset!r})" if subset else "")
    return UserInputError(
        f"The lm-eval task {name!r} needs {dataset_text}, which is neither local nor in the datasets cache "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'not found'}), and `evaluate` "
        "never downloads. Cache it once with network access and the same HF_HOME: `python -c \"from lm_eval.tasks "
        f"import TaskManager; TaskManager().load(['{name}'])\"`; or write a task YAML with dataset_path: json and "
        "local data_files and pass its folder with --include-path."
    )


def _task_config(manager: Any, name: str) -> dict[str, Any]:
    """The task's YAML as written (dataset path and name), for the error message; empty when it cannot be read."""
    try:
        from lm_eval.tasks._yaml_loader import load_yaml

        entry = manager.task_index.get(name)
        path = getattr(entry, "yaml_path", None) or (name if _task_file(name) else None)
        loaded = load_yaml(path, resolve_func=False) if path else {}
        return loaded if isinstance(loaded, dict) else {}
    except Exception:
        return {}


def check_tasks(request: HarnessRequest, manager: Any) -> None:
    """Build every requested task once, offline, so a missing or uncached one fails before any model loads."""
    with offline_hub(), _quiet_harness():
        for name in request.tasks:
            if name not in manager.all_tasks and not _task_file(name):
                raise _unknown_task(name, manager)
            try:
                manager.load([name])
            except (ConnectionError, FileNotFoundError, OSError) as error:
                raise _uncached_task(name, _task_config(manager, name), error) from None
            except Exception as error:
                if "offline" in type(error).__name__.lower() or "DatasetNotFound" in type(error).__name__:
                    raise _uncached_task(name, _task_config(manager, name), error) from None
                raise UserInputError(
                    f"The lm-eval task {name!r} could not be built ({type(error).__name__}: {error}). Check its "
                    "YAML (dataset_path, data_files, the doc_to_* fields) against lm-eval's task guide."
                ) from None


@contextmanager
def _quiet_harness() -> Iterator[None]:
    """lm-eval logs every step at INFO and warns that a loaded model is passed in (which is the point here)."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _metric_name(key: str) -> str:
    return key.removesuffix(DEFAULT_FILTER_SUFFIX)


def task_results(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """lm-eval's results as the report keeps them: per task its metrics (and their standard errors), the number of
    examples scored, the shots and the task's version."""
    samples = output.get("n-samples", {})
    shots = output.get("n-shot", {})
    versions = output.get("versions", {})
    better = output.get("higher_is_better", {})
    results = {}
    for task, values in output.get("results", {}).items():
        metrics = {_metric_name(key): value for key, value in values.items()
                   if key not in ("alias", "name", "sample_len", "samples") and isinstance(value, (int, float))
                   and not isinstance(value, bool)}
        count = samples.get(task, {}).get("effective", values.get("sample_len"))
        results[task] = {
            "metrics": metrics,
            "samples": count,
            "num_fewshot": shots.get(task),
            "version": versions.get(task),
            "higher_is_better": better.get(task, {}),
        }
    return results


def run_tasks(loaded: LoadedModel, request: HarnessRequest, manager: Any) -> dict[str, dict[str, Any]]:
    """The requested tasks on the model as it is now (with a trial's edit applied, if one is), deterministic."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    try:
        with offline_hub(), _quiet_harness():
            model = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=request.batch_size,
                         max_batch_size=request.max_batch_size)
            output = simple_evaluate(model=model, tasks=list(request.tasks), task_manager=manager,
                                     num_fewshot=request.num_fewshot, limit=request.limit, log_samples=False,
                                     bootstrap_iters=BOOTSTRAP_ITERATIONS)
    except HereticError:
        raise
    except Exception as error:
        if is_storage_error(error):
            raise StorageError(describe_storage_error(error, getattr(error, "filename", None) or "the cache",
                                                      "write lm-eval's cache")) from None
        raise HereticError(
            f"lm-eval failed while running {', '.join(request.tasks)} on {loaded.location} "
            f"({type(error).__name__}: {error}). A task written for another kind of model (generation with a "
            "chat template, say) may not suit this one; try the tasks one at a time to find it."
        ) from error
    if not output or not output.get("results"):
        raise HereticError(f"lm-eval returned no results for {', '.join(request.tasks)} on {loaded.location}.")
    return task_results(output)


def result_rows(original: dict[str, dict[str, Any]] | None,
                edited: dict[str, dict[str, Any]]) -> list[tuple[str, str, float | None, float, float | None]]:
    """(task, metric, original value, this model's value, its standard error) per metric that has a value; the
    standard errors themselves are not rows."""
    rows = []
    for task, result in edited.items():
        metrics = result["metrics"]
        for metric, value in metrics.items():
            if metric.endswith("_stderr"):
                continue
            before = (original or {}).get(task, {}).get("metrics", {}).get(metric)
            rows.append((task, metric, before, value, metrics.get(f"{metric}_stderr")))
    return rows
