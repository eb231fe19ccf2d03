"""``heretic-tui serve``: models behind an OpenAI-compatible chat-completions API, as a detached job."""

from __future__ import annotations

import argparse

from heretic_tui.cli.arguments import add_headless_flag, add_run_dir_flag, add_settings_flags, settings_from_arguments
from heretic_tui.cli.following import ProgressPrinter, exit_code_for, follow_headless, launch_app, progress_line
from heretic_tui.core.errors import EXIT_OK
from heretic_tui.core.runs.events import Metrics

NAME = "serve"
HELP = "serve models (base, trials, exports) over an OpenAI-compatible API"
DESCRIPTION = """\
Serve one or more models at http://HOST:PORT/v1 for any OpenAI client
(chat completions, streaming or not). Name each model NAME=MODEL, e.g.
  heretic-tui serve base=demo abliterated=runs/20261201-demo#12
and ask for it by NAME in the request's "model" field. MODEL is a folder,
a hub id, 'demo', an export or RUN_DIR#TRIAL (applied in memory). vLLM
generates when installed (serve.serve_engine), else transformers. Binding
anywhere but 127.0.0.1 needs HERETIC_SERVE_API_KEY. It runs as a detached job:
Ctrl-C (or cancel in the TUI) stops it; --detach leaves it running."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser)
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="NAME=MODEL or MODEL: a folder, hub id, 'demo', export or RUN_DIR#TRIAL")
    parser.add_argument("--host", help="address to listen on (default: serve.serve_host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: serve.serve_port, 8000; 0 picks a free one)")
    parser.add_argument("--detach", action="store_true",
                        help="print the URL once the server listens, then return and leave it running")
    add_run_dir_flag(parser)
    add_headless_flag(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.serving.job import SERVER_METRICS, start_serve

    settings = settings_from_arguments(arguments)
    handle = start_serve(arguments.models, settings, arguments.run_dir, host=arguments.host, port=arguments.port)
    if not arguments.headless and not arguments.detach:
        return launch_app(attach_run=handle.run.path)
    if not arguments.detach:
        return follow_headless(handle)[0]
    progress_line(f"run folder: {handle.run.path}")
    printer = ProgressPrinter()
    last = None
    for item in handle.events():
        printer(item)
        last = item
        if isinstance(item, Metrics) and item.name == SERVER_METRICS:
            print(item.values["url"], flush=True)
            progress_line(f"the server keeps running; stop it from the TUI, or with Ctrl-C in `heretic-tui attach "
                          f"--headless {handle.run.path}`")
            return EXIT_OK
    return exit_code_for(last)
