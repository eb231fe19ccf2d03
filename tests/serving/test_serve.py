"""``heretic-tui serve`` through the official openai client: models by name, refusal vs abliteration, streaming,
stop sequences and token limits, OpenAI-style errors, and what the run folder keeps (never the key)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from serving_helpers import API_KEY, Server, read_events

from heretic_tui.core.abliteration.builtin_prompts import builtin_prompts
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.demo import DEMO_SYSTEM_PROMPT
from heretic_tui.core.serving.job import parse_served_models, preflight, start_serve
from heretic_tui.core.settings import Settings

HARMFUL = builtin_prompts("harmful", "test")[:4]
HARMLESS = builtin_prompts("harmless", "test")[0]


def refuses(answer: str) -> bool:
    """A refusal by the default markers (the demo refuses with "I'm sorry but I can't help with that.")."""
    text = answer.lower().replace("\u2019", "'")
    return any(marker.lower() in text for marker in Settings().abliteration.refusal_markers)


def ask(server: Server, model: str, prompt: str, **options: object) -> object:
    options.setdefault("temperature", 0)
    options.setdefault("max_tokens", 24)
    return server.client().chat.completions.create(
        model=model, messages=[{"role": "system", "content": DEMO_SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
        **options)


def test_the_served_models_are_listed_by_their_names(server: Server) -> None:
    assert [model.id for model in server.client().models.list()] == ["base", "abliterated"]
    assert server.client().models.retrieve("abliterated").id == "abliterated"


def test_the_base_refuses_and_the_abliterated_trial_answers(server: Server) -> None:
    assert server.chosen_refusal_rate <= 0.1, "the recorded study's chosen trial should have (almost) no refusals"
    base = [ask(server, "base", prompt).choices[0].message.content for prompt in HARMFUL]
    trial = [ask(server, "abliterated", prompt).choices[0].message.content for prompt in HARMFUL]
    assert all(refuses(answer) for answer in base), base
    assert sum(bool(answer.strip()) and not refuses(answer) for answer in trial) >= len(HARMFUL) - 1, trial


def test_a_streamed_answer_is_the_same_answer_in_pieces(server: Server) -> None:
    whole = ask(server, "abliterated", HARMLESS, max_tokens=16)
    stream = ask(server, "abliterated", HARMLESS, max_tokens=16, stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([piece for piece in pieces if piece]) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason == "length"
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens == 16
    assert usage.prompt_tokens == whole.usage.prompt_tokens > 0


def test_max_tokens_and_stop_sequences_end_the_answer(server: Server) -> None:
    short = ask(server, "base", HARMLESS, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    full = ask(server, "base", HARMLESS, max_tokens=24).choices[0].message.content
    words = full.split()
    stop = " " + words[3]
    cut = ask(server, "base", HARMLESS, max_tokens=24, stop=[stop, "never-said"])
    assert cut.choices[0].message.content == full[:full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                       ask(server, "base", HARMLESS, max_tokens=24, stop=stop, stream=True) if chunk.choices)
    assert streamed == full[:full.index(stop)]


def test_sampling_with_a_seed_is_repeatable(server: Server) -> None:
    first = ask(server, "abliterated", HARMLESS, temperature=1.5, seed=7).choices[0].message.content
    again = ask(server, "abliterated", HARMLESS, temperature=1.5, seed=7).choices[0].message.content
    assert first == again and first


@pytest.mark.parametrize(("options", "error", "param"), [
    ({"model": "no-such-model"}, openai.NotFoundError, "model"),
    ({"temperature": 5}, openai.BadRequestError, "temperature"),
    ({"n": 2}, openai.BadRequestError, "n"),
    ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, openai.BadRequestError, "stop"),
])
def test_bad_requests_get_openai_errors(server: Server, options: dict[str, object], error: type[Exception],
                                        param: str) -> None:
    options = {"model": "base", "messages": [{"role": "user", "content": "hello"}], **options}
    with pytest.raises(error) as raised:
        server.client().chat.completions.create(**options)
    body = raised.value.body
    assert body["param"] == param and body["type"] == "invalid_request_error" and body["message"]


def test_a_wrong_key_is_refused_and_a_broken_body_is_an_error_object(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        server.client(api_key="wrong").models.list()
    assert raised.value.body["code"] == "invalid_api_key"
    reply = httpx.post(f"{server.url}/chat/completions", content=b"{not json",
                       headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.post(f"{server.url}/chat/completions", json={"model": "base"},
                         headers={"Authorization": f"Bearer {API_KEY}"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"


def test_the_run_folder_announces_the_server_and_never_holds_the_key(server: Server) -> None:
    listening = [item for item in read_events(server.run_dir) if item.get("type") == "metrics"
                 and item.get("name") == "server"]
    assert listening and listening[0]["values"]["url"] == server.url
    assert listening[0]["values"]["models"] == ["base", "abliterated"]
    for path in server.run_dir.rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text(errors="replace"), path
    job = json.loads((server.run_dir / "job.json").read_text())
    assert job["kind"] == "serve" and job["arguments"]["models"][1]["model"] == f"{server.study_dir}#{server.chosen_trial}"


def test_serving_beyond_loopback_needs_a_key(tmp_path: Path) -> None:
    settings = Settings()
    settings.output.runs_directory = str(tmp_path / "runs")
    with pytest.raises(UserInputError, match="HERETIC_SERVE_API_KEY"):
        start_serve(["demo"], settings, host="0.0.0.0", port=0)
    assert not (tmp_path / "runs").exists()


def test_a_port_in_use_and_repeated_names_are_refused_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UserInputError, match="another program uses the port"):
            preflight(["demo"], Settings(), "127.0.0.1", taken.getsockname()[1])
    with pytest.raises(UserInputError, match="base=demo"):
        parse_served_models(["demo", "demo"])
    with pytest.raises(UserInputError, match="invalid name"):
        parse_served_models(["bad name=demo"])
    assert [item.name for item in parse_served_models(["a=demo", "demo"])] == ["a", "demo"]
