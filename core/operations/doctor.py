"""``heretic-tui doctor``: what a rented GPU box offers before an hour of it is spent finding out.

Each check is one line, ``ok``, ``warning`` (works, but slower or with less) or ``problem`` (something a run will
trip over), and a line that is not ok says how to fix it. The checks only look: nothing is installed, downloaded
or written, except one empty file created and removed again to learn that the runs folder takes writes. The Hub
token is only reported as present or absent, never shown, and the Hub is asked one short question with a short
timeout (it answers with an HTTP status whatever the token; any answer means it is reachable).

The exit code is by the worst line (see :func:`exit_code`): 0 when nothing is a problem, 1 (``EXIT_FAILED`` of
:mod:`heretic_tui.core.errors`) when a line is, and with ``strict`` a warning counts as a problem too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.filesize import decimal

from heretic_tui.core.errors import EXIT_FAILED, EXIT_OK
from heretic_tui.core.settings import Settings

OK = "ok"
WARNING = "warning"
PROBLEM = "problem"
LEVELS = (OK, WARNING, PROBLEM)
"""From best to worst; the worst line decides the exit code."""

MINIMUM_PYTHON = (3, 10)
LOW_DISK_BYTES = 20 * 10**9
"""Below this a real model (and its export) will not fit: a 7B model is 15 GB in bfloat16, its export as much."""
NO_DISK_BYTES = 2 * 10**9
MINIMUM_COLUMNS = 80
MINIMUM_LINES = 24
HUB_TIMEOUT_SECONDS = 5.0
NVIDIA_SMI_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    """One line of the report: what was looked at, what was found, how bad it is, and the fix when it is not ok."""

    name: str
    level: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class TerminalFacts:
    """The terminal the app would draw on; the CLI measures it, the TUI screen passes its own size."""

    is_terminal: bool
    columns: int
    lines: int
    color_system: str | None
    """rich's answer: None, 'standard' (16 colours), '256', 'truecolor' or 'windows'."""


def measure_terminal(environ: Mapping[str, str] | None = None) -> TerminalFacts:
    """The size and colour support of the terminal on standard output, as rich (which Textual draws with) sees it."""
    from rich.console import Console

    console = Console(file=sys.stdout, _environ=dict(os.environ if environ is None else environ))
    return TerminalFacts(console.is_terminal, console.size.width, console.size.height, console.color_system)


def python_check() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] < MINIMUM_PYTHON:
        return Check("Python", PROBLEM, f"{version} at {sys.executable}",
                     f"heretic-tui needs Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer: create the venv "
                     "with a newer python3.")
    return Check("Python", OK, f"{version} at {sys.executable}")


def _nvidia_driver_version() -> str | None:
    """The NVIDIA driver's version from nvidia-smi (torch reports the CUDA runtime, not the driver)."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    try:
        result = subprocess.run([program, "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_SECONDS)
    except (OSError, subprocess.SubprocessError):
        return None
    versions = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return versions[0] if result.returncode == 0 and versions else None


def torch_checks() -> list[Check]:
    """torch itself, whether its build has CUDA, and every GPU with its free and total memory."""
    try:
        import torch
    except ImportError as error:
        return [Check("torch", PROBLEM, f"cannot be imported ({error})",
                      "Install it into the venv: `make setup` (CPU build), or a CUDA build from pytorch.org.")]
    cuda_build = torch.version.cuda
    checks = []
    if cuda_build is None:
        checks.append(Check("torch", WARNING, f"{torch.__version__}, a CPU-only build (no CUDA)",
                            "Only the demo and small models are practical on the CPU. On a GPU box install a CUDA "
                            "build of torch into .venv (pip install torch --index-url of your CUDA version, see "
                            "pytorch.org), then run `make setup` again."))
        return checks
    available = torch.cuda.is_available()
    driver = _nvidia_driver_version()
    driver_text = f", NVIDIA driver {driver}" if driver else ""
    if not available:
        checks.append(Check("torch", PROBLEM, f"{torch.__version__}, built for CUDA {cuda_build}{driver_text}, but "
                                              "no CUDA device can be used",
                            "Check that the GPU is visible (`nvidia-smi`), that CUDA_VISIBLE_DEVICES is not empty, and "
                            "that the driver supports CUDA " + cuda_build + " (a newer driver, or a torch build for "
                            "an older CUDA)."))
        return checks
    checks.append(Check("torch", OK, f"{torch.__version__}, CUDA {cuda_build}{driver_text}"))
    for index in range(torch.cuda.device_count()):
        name = torch.cuda.get_device_name(index)
        try:
            free, total = torch.cuda.mem_get_info(index)
        except RuntimeError as error:
            checks.append(Check(f"GPU {index}", PROBLEM, f"{name}: its memory cannot be read ({error})",
                                "The device is in a bad state or taken exclusively by another process; check "
                                "`nvidia-smi`."))
            continue
        detail = f"{name}: {decimal(free)} free of {decimal(total)}"
        if free < 0.5 * total:
            checks.append(Check(f"GPU {index}", WARNING, detail + " (other processes hold the rest)",
                                "Stop what holds the memory (`nvidia-smi` lists it), or plan for the free part only "
                                "(`heretic-tui plan --model M`)."))
        else:
            checks.append(Check(f"GPU {index}", OK, detail))
    return checks


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.version.cuda is not None and torch.cuda.is_available()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_checks(has_cuda: bool) -> list[Check]:
    """The optional packages that only matter with a CUDA GPU: bitsandbytes (4-bit and 8-bit), flash-attn, vLLM
    (serve)."""
    packages = (
        ("bitsandbytes", "bitsandbytes", "4-bit and 8-bit loading (and QLoRA fine-tuning) are not available",
         "pip install 'heretic-tui[gpu]' (bitsandbytes) into the venv."),
        ("flash-attn", "flash_attn", "attention uses PyTorch's SDPA kernels instead (works, a little slower on "
                                     "long sequences)",
         "pip install flash-attn --no-build-isolation (needs the CUDA toolkit to build)."),
        ("vllm", "vllm", "`heretic-tui serve` uses its built-in transformers engine (slower under many requests)",
         "pip install vllm into the venv (a version built for this torch)."),
    )
    checks = []
    for distribution, module, without, fix in packages:
        version = _version(distribution) if importlib.util.find_spec(module) is not None else None
        if version is not None:
            checks.append(Check(distribution, OK, f"{version}" + ("" if has_cuda else " (unused without CUDA)")))
        elif has_cuda:
            checks.append(Check(distribution, WARNING, f"not installed: {without}", fix))
        else:
            checks.append(Check(distribution, OK, "not installed (it needs a CUDA GPU, and there is none)"))
    return checks


def _existing_parent(path: Path) -> Path:
    """The folder itself, or the nearest parent that exists (a runs folder is created on the first run)."""
    path = path.expanduser().absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor)


def disk_check(name: str, folder: Path) -> Check:
    existing = _existing_parent(folder)
    try:
        usage = shutil.disk_usage(existing)
    except OSError as error:
        return Check(name, PROBLEM, f"{folder}: free space cannot be read ({error.strerror or error})",
                     "Check that the folder's disk is mounted and readable.")
    where = str(folder) if existing == folder.expanduser().absolute() else f"{folder} (not created yet; on {existing})"
    detail = f"{decimal(usage.free)} free of {decimal(usage.total)} in {where}"
    fix = ("Free space there, or point it at a larger disk (output.runs_directory for runs, HF_HOME for the Hugging "
           "Face cache).")
    if usage.free < NO_DISK_BYTES:
        return Check(name, PROBLEM, detail, fix)
    if usage.free < LOW_DISK_BYTES:
        return Check(name, WARNING, detail + " (enough for the demo, not for a real model and its export)", fix)
    return Check(name, OK, detail)


def write_check(folder: Path) -> Check:
    """Whether runs can be written where they go: one empty file made and removed in the folder (or its parent)."""
    existing = _existing_parent(folder)
    if not existing.is_dir():
        return Check("Runs folder", PROBLEM, f"{folder}: {existing} is a file, not a folder",
                     "Set output.runs_directory to a folder.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".heretic-doctor-"):
            pass
    except OSError as error:
        return Check("Runs folder", PROBLEM, f"{existing} cannot be written ({error.strerror or error})",
                     "Fix the permission (or remount read-write), or set output.runs_directory to a folder this "
                     "user may write.")
    state = "writable" if existing == folder.expanduser().absolute() else f"can be created (in {existing})"
    return Check("Runs folder", OK, f"{folder} {state}")


def token_check() -> Check:
    """Whether a Hub token is configured (HF_TOKEN or the cached login); the token itself is never shown."""
    from huggingface_hub import get_token

    from heretic_tui.core.hub_network import LOGIN_HELP

    if get_token():
        source = "HF_TOKEN" if os.environ.get("HF_TOKEN") else "the cached login"
        return Check("Hub token", OK, f"present (from {source}; not shown)")
    return Check("Hub token", WARNING, "none: public models download, gated models and uploads need one", LOGIN_HELP)


def hub_check(endpoint: str | None = None, timeout: float = HUB_TIMEOUT_SECONDS) -> Check:
    """One short request to the Hub through huggingface_hub's own client; any HTTP answer means it is reachable."""
    import httpx2
    from huggingface_hub import constants, get_session

    from heretic_tui.core.hub_network import describe_hub_failure, network_cause
    from heretic_tui.core.settings import HubSettings

    endpoint = endpoint or constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:
        return Check("Hub", WARNING, f"HF_HUB_OFFLINE is set: {endpoint} is not contacted",
                     "Unset HF_HUB_OFFLINE to download models and upload; local folders and the demo work as they are.")
    try:
        response = get_session().get(f"{endpoint.rstrip('/')}/api/whoami-v2",
                                     timeout=httpx2.Timeout(timeout, connect=timeout))
    except Exception as error:
        cause = network_cause(error)
        if cause is None:
            raise
        message = describe_hub_failure(cause, "checking that the Hub answers", endpoint=endpoint,
                                       settings=HubSettings(connect_timeout=timeout, read_timeout=timeout),
                                       hint="Downloads of hub ids and uploads will fail the same way.")
        return Check("Hub", PROBLEM, f"{endpoint} cannot be reached", str(message))
    if response.status_code >= 500:
        return Check("Hub", WARNING, f"{endpoint} answered HTTP {response.status_code} (trouble on its side)",
                     "Wait a few minutes (https://status.huggingface.co) before a run that downloads or uploads.")
    return Check("Hub", OK, f"{endpoint} answers (HTTP {response.status_code})")


def terminal_checks(terminal: TerminalFacts) -> list[Check]:
    if not terminal.is_terminal:
        return [Check("Terminal", OK, "standard output is not a terminal (fine for --headless commands; the app "
                                      "needs one)")]
    size = f"{terminal.columns}x{terminal.lines}"
    checks = []
    if terminal.columns < MINIMUM_COLUMNS or terminal.lines < MINIMUM_LINES:
        checks.append(Check("Terminal size", WARNING, f"{size}, below {MINIMUM_COLUMNS}x{MINIMUM_LINES}",
                            "Enlarge the window (or the tmux pane): the dashboards need at least 80 columns and 24 "
                            "lines."))
    else:
        checks.append(Check("Terminal size", OK, size))
    colours = {None: "none", "standard": "16 colours", "windows": "16 colours", "256": "256 colours",
               "truecolor": "true colour"}.get(terminal.color_system, str(terminal.color_system))
    if terminal.color_system in ("256", "truecolor"):
        checks.append(Check("Colours", OK, colours))
    else:
        checks.append(Check("Colours", WARNING, colours,
                            "Set TERM=xterm-256color (and COLORTERM=truecolor if the terminal has it); inside tmux "
                            "add `set -g default-terminal tmux-256color`. NO_COLOR turns colours off on purpose."))
    return checks


def run_checks(settings: Settings, terminal: TerminalFacts | None = None, *, hub_endpoint: str | None = None,
               check_hub: Callable[[str | None], Check] | None = None) -> list[Check]:
    """Every check, in the order the report lists them."""
    from huggingface_hub import constants

    from heretic_tui.core.runs.run_directory import runs_root

    has_cuda = _has_cuda()
    runs = runs_root(settings)
    checks = [python_check(), *torch_checks(), *package_checks(has_cuda),
              disk_check("Disk (runs)", runs), disk_check("Disk (HF cache)", Path(constants.HF_HUB_CACHE)),
              write_check(runs), token_check(), (check_hub or hub_check)(hub_endpoint)]
    checks += terminal_checks(terminal or measure_terminal())
    return checks


def worst_level(checks: list[Check]) -> str:
    return max((check.level for check in checks), key=LEVELS.index, default=OK)


def exit_code(checks: list[Check], strict: bool = False) -> int:
    """0 when no line is a problem (warnings too, with ``strict``), else 1."""
    worst = worst_level(checks)
    return EXIT_FAILED if worst == PROBLEM or (strict and worst == WARNING) else EXIT_OK


def summary_line(checks: list[Check]) -> str:
    counts = {level: sum(check.level == level for check in checks) for level in LEVELS}
    return f"{counts[OK]} ok, {counts[WARNING]} warning{'s' * (counts[WARNING] != 1)}, " \
           f"{counts[PROBLEM]} problem{'s' * (counts[PROBLEM] != 1)}"


def report_data(checks: list[Check]) -> dict[str, Any]:
    return {"checks": [check.to_dict() for check in checks], "worst": worst_level(checks)}


def run_checks_apart(settings: Settings, terminal: TerminalFacts, timeout: float = 120.0) -> list[Check]:
    """:func:`run_checks` in a child process, for the TUI: importing torch and asking CUDA for free memory there
    would keep a CUDA context (hundreds of MB of GPU memory) in the app for as long as it runs."""
    import json

    from heretic_tui.core.runs.run_directory import runs_root

    command = [sys.executable, "-m", "heretic_tui.core.operations.doctor", "--runs-directory",
               str(runs_root(settings)), "--terminal", json.dumps(asdict(terminal))]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        return [Check(**item) for item in json.loads(finished.stdout)["checks"]]
    except subprocess.TimeoutExpired:
        return [Check("doctor", PROBLEM, f"the checks did not finish within {timeout:.0f} s",
                      "Run `heretic-tui doctor` in a shell to see which check hangs.")]
    except (ValueError, KeyError, TypeError):
        reason = " ".join((finished.stderr or "").split())[-300:]
        return [Check("doctor", PROBLEM, f"the checks failed: {reason or 'no output'}",
                      "Run `heretic-tui doctor` in a shell for the full message.")]


def main(argv: list[str] | None = None) -> None:
    """``python -m heretic_tui.core.operations.doctor``: the JSON report for :func:`run_checks_apart`."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m heretic_tui.core.operations.doctor")
    parser.add_argument("--runs-directory", required=True)
    parser.add_argument("--terminal", required=True, help="TerminalFacts as JSON")
    arguments = parser.parse_args(argv)
    settings = Settings()
    settings.output.runs_directory = arguments.runs_directory
    print(json.dumps(report_data(run_checks(settings, TerminalFacts(**json.loads(arguments.terminal))))))


if __name__ == "__main__":
    main()
