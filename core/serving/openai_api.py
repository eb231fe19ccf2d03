"""The OpenAI-compatible HTTP API on FastAPI: ``/v1/models`` and ``/v1/chat/completions``, streaming or not.

Any OpenAI client talks to it by changing its base URL: several models are listed by the names they were served
under (``base``, ``abliterated``), so an A/B comparison is the ``model`` field of the request. Every error is an
OpenAI error object (``{"error": {"message", "type", "param", "code"}}``) with the status code OpenAI uses, which
is what clients turn into their own exceptions (``openai.BadRequestError``, ``AuthenticationError``,
``NotFoundError``); requests this server cannot honour (several choices, tools, images) are refused the same way
rather than silently answered differently.
"""

from __future__ import annotations

import hmac
import json
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from heretic_tui.core.serving.engines import CompletionOutcome, CompletionRequest, Engine

OWNER = "heretic-tui"
MAX_STOP_SEQUENCES = 4


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    """The request fields this server reads; unknown fields are accepted and ignored, as OpenAI's own API does."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    seed: int | None = None
    tools: list[Any] | None = None


class OpenAIError(Exception):
    """An error the client gets as an OpenAI error object."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def error_response(error: OpenAIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise OpenAIError(400, f"messages[{index}].content: only text parts are supported (got a '{part.type}' "
                                   "part).", param=f"messages.{index}.content", code="unsupported_content")
        texts.append(part.text)
    return "".join(texts)


def completion_request(body: ChatCompletionBody, default_max_tokens: int) -> CompletionRequest:
    """The engine's request from the validated body, or an OpenAIError naming the field that cannot be honoured."""
    if body.n not in (None, 1):
        raise OpenAIError(400, f"n={body.n}: this server returns one choice per request; send n=1 (or leave it "
                               "out) and repeat the request for more.", param="n", code="unsupported_value")
    if body.tools:
        raise OpenAIError(400, "tools are not supported by this server (it serves plain chat completions).",
                          param="tools", code="unsupported_parameter")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > MAX_STOP_SEQUENCES:
        raise OpenAIError(400, f"stop: at most {MAX_STOP_SEQUENCES} stop sequences are allowed (got {len(stop)}).",
                          param="stop", code="invalid_value")
    messages = [{"role": "system" if message.role == "developer" else message.role, "content": _text(message, index)}
                for index, message in enumerate(body.messages)]
    max_tokens = body.max_completion_tokens or body.max_tokens or default_max_tokens
    return CompletionRequest(
        messages=messages,
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=tuple(stop),
        seed=body.seed,
    )


def create_app(engines: dict[str, Engine], *, api_key: str | None, default_max_tokens: int) -> FastAPI:
    """The application serving ``engines`` by name; with ``api_key`` every /v1 request must send it as a bearer."""
    app = FastAPI(title="heretic-tui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.requests = 0
    created = int(time.time())

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, error: OpenAIError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, param = "The request body is not valid JSON.", None
        elif param:
            message = f"{param}: {message}"
        return error_response(OpenAIError(400, message, param=param, code="invalid_value"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = "not_found" if error.status_code == 404 else None
        return error_response(OpenAIError(error.status_code, f"{request.method} {request.url.path}: {error.detail}",
                                          code=code))

    @app.middleware("http")
    async def check_key(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
                return error_response(OpenAIError(
                    401, "Incorrect or missing API key: send 'Authorization: Bearer KEY' with the key the server "
                         "was started with (serve.serve_api_key).", code="invalid_api_key"))
        return await call_next(request)

    def describe(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": OWNER}

    def engine_named(name: str) -> Engine:
        if name not in engines:
            raise OpenAIError(404, f"The model '{name}' does not exist on this server; it serves: "
                                   f"{', '.join(engines)}.", param="model", code="model_not_found")
        return engines[name]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(engines)}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [describe(name) for name in engines]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> dict[str, Any]:
        engine_named(name)
        return describe(name)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionBody) -> Any:
        engine = engine_named(body.model)
        request = completion_request(body, default_max_tokens)
        app.state.requests += 1
        identifier = f"chatcmpl-{uuid.uuid4().hex}"
        outcome = CompletionOutcome()
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_stream(engine, request, outcome, identifier, body.model, include_usage),
                                     media_type="text/event-stream")
        try:
            text = "".join([piece async for piece in engine.stream(request, outcome)])
        except Exception as error:
            traceback.print_exc()
            raise OpenAIError(500, f"Generation failed: {type(error).__name__}: {error}", kind="server_error",
                              code="generation_failed") from None
        return {
            "id": identifier,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": outcome.finish_reason}],
            "usage": _usage(outcome),
        }

    return app


def _usage(outcome: CompletionOutcome) -> dict[str, int]:
    return {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(engine: Engine, request: CompletionRequest, outcome: CompletionOutcome, identifier: str,
                  model: str, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events as OpenAI sends them: a role delta, content deltas, the finish reason, [DONE]."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        return _event({"id": identifier, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]})

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for piece in engine.stream(request, outcome):
            yield chunk({"content": piece})
    except Exception as error:
        traceback.print_exc()
        yield _event(OpenAIError(500, f"Generation failed: {type(error).__name__}: {error}", kind="server_error",
                                 code="generation_failed").body())
        return
    yield chunk({}, outcome.finish_reason)
    if include_usage:
        yield _event({"id": identifier, "object": "chat.completion.chunk", "created": created, "model": model,
                      "choices": [], "usage": _usage(outcome)})
    yield "data: [DONE]\n\n"
