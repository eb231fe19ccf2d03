"""The serve job (kind ``serve``): load the named models, listen, answer until stopped.

It runs detached like every other job, so a server started over SSH outlives the session, ``heretic-tui attach``
and the TUI follow its journal, and stopping it is the usual cancel. The address is bound before any model loads
(a port in use costs nothing), and the URL is announced as a ``server`` metrics event once uvicorn accepts
connections, so a client waits for that event rather than polling the port. The API key reaches the worker through
the job's secret pipe, never its config.toml; binding anywhere but a loopback address without one is refused.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import HereticError, UserInputError
from heretic_tui.core.models.references import ModelReference, parse_model_reference
from heretic_tui.core.runs.events import Metrics
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.lifecycle import start_job
from heretic_tui.core.runs.run_directory import RunDirectory, runs_root
from heretic_tui.core.settings import Settings

KIND = "serve"
SERVER_METRICS = "server"
"""Name of the metrics event that says the server accepts connections (values: url, models, engines)."""
STARTUP_SECONDS = 60.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServedModel:
    """A model and the name clients ask for it by (the ``model`` field of a request)."""

    name: str
    reference: ModelReference


def parse_served_model(text: str) -> ServedModel:
    """``NAME=MODEL`` or just ``MODEL`` (named after its folder, run and trial, hub id or ``demo``)."""
    name, separator, rest = text.partition("=")
    if separator and NAME_PATTERN.match(name) and not Path(text).expanduser().exists():
        return ServedModel(name, parse_model_reference(rest))
    if separator and not Path(text).expanduser().exists():
        raise UserInputError(
            f"The served model {text!r} has an invalid name {name!r}: a name is 1 to 64 letters, digits, '.', '_', "
            "':' or '-', starting with a letter or digit (e.g. base=demo or abliterated=runs/x#3)."
        )
    reference = parse_model_reference(text)
    return ServedModel(reference.label, reference)


def parse_served_models(texts: list[str]) -> list[ServedModel]:
    if not texts:
        raise UserInputError("Name at least one model to serve: a folder, a hub id, 'demo' or RUN_DIR#TRIAL, "
                             "optionally as NAME=MODEL.")
    served = [parse_served_model(text) for text in texts]
    names = [item.name for item in served]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserInputError(
            f"Two served models have the name {', '.join(repeated)}; give each its own with NAME=MODEL (e.g. "
            "base=demo abliterated=RUN_DIR#TRIAL)."
        )
    return served


def is_loopback(host: str) -> bool:
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(host: str, port: int, api_key: str) -> None:
    if not 0 <= port <= 65535:
        raise UserInputError(f"--port {port} is not a TCP port; give 1 to 65535 (or 0 for any free port).")
    if not host.strip():
        raise UserInputError("The server address (--host, serve.serve_host) is empty; give e.g. 127.0.0.1.")
    if not is_loopback(host) and not api_key:
        raise UserInputError(
            f"Serving on {host} makes the models reachable from other machines, so it needs an API key: set "
            "HERETIC_SERVE_API_KEY (or serve.serve_api_key) to a long random string, or serve on 127.0.0.1 and "
            "reach it through an SSH tunnel."
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound now so a port in use is one sentence (exit 2) instead of a server that never
    starts; uvicorn starts listening on it once the models are loaded, so until then a client is refused at once
    rather than left waiting."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UserInputError(f"The server address {host!r} cannot be resolved ({error.strerror}); give an IP "
                             "address such as 127.0.0.1 or 0.0.0.0.") from None
    family, kind, protocol, _, address = infos[0]
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise UserInputError(f"Cannot listen on {host}:{port} ({error.strerror}): another program uses the port, or "
                             "the address is not this machine's. Choose another --port (0 picks a free one).") \
            from None
    return listener


def server_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/v1"


def preflight(models: list[str], settings: Settings, host: str, port: int) -> list[ServedModel]:
    """Everything checked before a run folder exists: names, references (no weights loaded), the address."""
    from heretic_tui.core.serving.engines import engine_for
    from heretic_tui.core.shipping.compare import check_model_reference

    check_address(host, port, settings.serve.serve_api_key)
    served = parse_served_models(models)
    for item in served:
        check_model_reference(item.reference, settings)
        engine_for(item.reference, settings, lambda: True)
    bind_socket(host, port).close()
    return served


def start_serve(models: list[str], settings: Settings, run_dir: str | Path | None = None, *,
                host: str | None = None, port: int | None = None) -> JobHandle:
    """Check the request, then serve in a detached worker job with its own run folder under the runs root."""
    host = host or settings.serve.serve_host
    port = settings.serve.serve_port if port is None else port
    served = preflight(models, settings, host, port)
    api_key = settings.serve.serve_api_key
    job_settings = copy.deepcopy(settings)
    job_settings.serve.serve_api_key = ""
    job_settings.model.model = served[0].reference.canonical
    name = "serve-" + "-".join(item.name.replace("/", "-") for item in served)
    run = RunDirectory.create(runs_root(settings), name, exact=Path(run_dir) if run_dir else None)
    arguments = {"models": [{"name": item.name, "model": item.reference.canonical} for item in served],
                 "host": host, "port": port}
    return start_job(KIND, job_settings, run, arguments, secret=api_key or None)


def run(context: Any) -> dict[str, Any]:
    """Worker entry for kind 'serve': arguments models [{name, model}], host, port; the API key is the secret."""
    import torch
    import uvicorn

    from heretic_tui.core.serving.engines import ENGINE_VLLM, Engine, engine_for, load_engine
    from heretic_tui.core.serving.openai_api import create_app

    api_key = (context.secret or "").strip()
    host, port = str(context.arguments["host"]), int(context.arguments["port"])
    check_address(host, port, api_key)
    served = [ServedModel(str(item["name"]), parse_model_reference(str(item["model"])))
              for item in context.arguments["models"]]
    listener = bind_socket(host, port)
    bound_port = int(listener.getsockname()[1])
    url = server_url(host, bound_port)
    engines: dict[str, Engine] = {}
    vllm_models = sum(engine_for(item.reference, context.settings, torch.cuda.is_available) == ENGINE_VLLM
                      for item in served)
    with context.phase("load", total=len(served), description=f"loading {len(served)} model(s)") as progress:
        for index, item in enumerate(served):
            context.check_cancelled()
            engines[item.name] = load_engine(item.reference, context.settings, context.log, vllm_models)
            progress(index + 1)
    app = create_app(engines, api_key=api_key or None, default_max_tokens=context.settings.serve.serve_max_tokens)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="off", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True, name="uvicorn")
    started = time.monotonic()
    with context.phase("serve", description=f"serving {', '.join(engines)} at {url}"):
        thread.start()
        while not server.started:
            if not thread.is_alive() or time.monotonic() - started > STARTUP_SECONDS:
                raise HereticError(f"The web server did not start on {url}; worker.log has uvicorn's reason.")
            time.sleep(0.05)
        context.emit(Metrics(name=SERVER_METRICS, values={
            "url": url, "models": list(engines), "engines": {name: engine.engine_name for name, engine in
                                                             engines.items()},
            "api_key": bool(api_key)}))
        context.log(f"listening on {url} (models: {', '.join(engines)}); stop it with cancel or Ctrl-C")
        while thread.is_alive() and not context.cancel_requested:
            time.sleep(0.2)
        server.should_exit = True
        thread.join(timeout=30)
    listener.close()
    requests = int(app.state.requests)
    return {"url": url, "models": list(engines), "requests": requests,
            "result": f"served {requests} request(s) at {url}"}
