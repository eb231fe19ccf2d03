"""Talking to the Hugging Face Hub: bounded waits, a few retries, and every failure as one paragraph without the token.

huggingface_hub 2.4 shares one ``httpx2`` client whose default has no timeout at all, so a Hub (or a proxy) that
accepts a connection and never answers hangs an upload forever, and most of its API calls (whoami, repository
creation, file listing, commits) are never retried. :func:`configure_hub_client` installs a client factory through
the library's documented hook (``huggingface_hub.set_client_factory``) that keeps the library's own client and only
bounds its connect and read waits (settings ``hub.connect_timeout`` and ``hub.read_timeout``), also for the calls
that ask for no timeout themselves; :func:`hub_call` retries what is worth retrying (timeouts, refused or broken
connections, DNS failures, HTTP 408/429/5xx) with exponential backoff and turns whatever is left into a
:class:`~heretic_tui.core.errors.NetworkError` paragraph (exit 4): what failed, the endpoint it was sent to, and
what to try; HTTP 401 and 403 say how to fix the token.

No message leaves this module with a token in it: :func:`scrub_secrets` removes the exact token and anything shaped
like one (``hf_...``, a ``Bearer ...`` or ``Authorization:`` value), because a Hub or proxy that answers 400 may echo
the request headers back in its body, and huggingface_hub copies that body into its exception text.

Hand-written rather than left to the library: huggingface_hub's own ``http_backoff`` covers only its file
transfers, and its exceptions are meant for developers (a traceback with the server's body), not for a user who
needs one sentence and an exit code.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import set_client_factory
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils._http import default_client_factory

from heretic_tui.core.errors import HereticError, JobCancelled, NetworkError, UserInputError
from heretic_tui.core.settings import HubSettings

T = TypeVar("T")

REDACTED = "<redacted>"
TOKEN_SETTINGS_URL = "https://huggingface.co/settings/tokens"
STATUS_URL = "https://status.huggingface.co"
LOGIN_HELP = (
    f"Log in once with `hf auth login`, or set the HF_TOKEN environment variable to a token with write access "
    f"(create one at {TOKEN_SETTINGS_URL})."
)
MAX_SERVER_MESSAGE = 300
MAX_RETRY_WAIT = 60.0
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_TOKEN_SHAPE = re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{16,}")
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;}\]]+")
_AUTHORIZATION = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n,;}\]]+")
_LOGGER_PREFIXES = ("huggingface_hub", "httpx2", "httpcore2", "urllib3", "filelock")

_configured: tuple[float, float] | None = None


def scrub_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without the given secrets and without anything shaped like an HF token or an Authorization value."""
    for secret in secrets:
        if secret and len(secret.strip()) >= 4:
            text = text.replace(secret.strip(), REDACTED)
    text = _AUTHORIZATION.sub(lambda match: match.group(1) + REDACTED, text)
    text = _BEARER.sub("Bearer " + REDACTED, text)
    return _TOKEN_SHAPE.sub(REDACTED, text)


def configure_hub_client(settings: HubSettings) -> None:
    """Make every request huggingface_hub sends in this process give up after the configured waits.

    The factory keeps the library's own client (its request hook, redirects, proxies from the environment) and only
    sets the timeouts; the shared client is rebuilt from it, also after huggingface_hub closes it on a connection
    error. Calls with the same timeouts again change nothing.
    """
    global _configured
    timeouts = (float(settings.connect_timeout), float(settings.read_timeout))
    if _configured == timeouts:
        return
    connect, read = timeouts

    def bound(request: httpx2.Request) -> None:
        """Calls that pass ``timeout=None`` themselves (repository info lookups) get the bounds too."""
        asked = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            "connect": asked.get("connect") or connect,
            "read": asked.get("read") or read,
            "write": asked.get("write") or read,
            "pool": asked.get("pool") or read,
        }

    def bounded_client() -> httpx2.Client:
        client = default_client_factory()
        client.timeout = httpx2.Timeout(read, connect=connect)
        client.event_hooks["request"].append(bound)
        return client

    set_client_factory(bounded_client)
    _configured = timeouts


@contextmanager
def scrubbed_library_logs(secrets: Iterable[str | None]) -> Iterator[None]:
    """While active, log records of huggingface_hub and its HTTP stack lose any secret before they are written."""
    scrubber = _ScrubbingFilter(list(secrets))
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
        if name.split(".")[0] in _LOGGER_PREFIXES
    ]
    targets: list[logging.Filterer] = []
    for logger in loggers:
        targets.append(logger)
        targets.extend(logger.handlers)
    for target in targets:
        target.addFilter(scrubber)
    try:
        yield
    finally:
        for target in targets:
            target.removeFilter(scrubber)


class _ScrubbingFilter(logging.Filter):
    def __init__(self, secrets: list[str | None]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub_secrets(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            record.exc_text = scrub_secrets(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
        return True


def hub_call(
    action: str,
    function: Callable[[], T],
    *,
    endpoint: str,
    settings: HubSettings,
    secrets: Iterable[str | None] = (),
    repo: str | None = None,
    hint: str = "Then run the same command again.",
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``function()``, tried again after transient failures, with any failure turned into a paragraph.

    ``action`` completes "while ...", e.g. "creating the repository alice/model". A failure that is not the Hub's
    or the network's (a bug, a local file that vanished) is re-raised as it is, for the caller to deal with.
    """
    secrets = list(secrets)
    attempt = 0
    while True:
        try:
            return function()
        except JobCancelled:
            raise
        except Exception as error:
            if _cancelled(error):
                raise JobCancelled() from None
            cause = network_cause(error)
            if cause is None:
                raise
            if not is_transient(cause) or attempt >= settings.request_retries:
                raise describe_hub_failure(cause, action, endpoint=endpoint, settings=settings, secrets=secrets,
                                           repo=repo, attempts=attempt + 1, hint=hint) from None
            wait = min(MAX_RETRY_WAIT, float(settings.retry_wait) * 2**attempt)
            attempt += 1
            if on_retry is not None:
                on_retry(scrub_secrets(
                    f"{action}: {_short_reason(cause)}; attempt {attempt + 1} of {settings.request_retries + 1} "
                    f"in {wait:g} s", secrets))
            sleep(wait)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _cancelled(error: BaseException) -> bool:
    """huggingface_hub wraps anything raised during a file transfer in RuntimeError, a cancel included."""
    return any(isinstance(item, (JobCancelled, KeyboardInterrupt)) for item in _chain(error))


def network_cause(error: BaseException) -> BaseException | None:
    """The Hub or network failure behind ``error`` (huggingface_hub wraps transfer errors), or None for others."""
    for item in _chain(error):
        if isinstance(item, (HfHubHTTPError, OfflineModeIsEnabled, httpx2.TransportError)):
            return item
    return None


def is_transient(error: BaseException) -> bool:
    """Worth another attempt: the connection failed or timed out, or the Hub said 'later' (408, 429, 5xx)."""
    if isinstance(error, HfHubHTTPError):
        return _status(error) in RETRIED_STATUSES
    return isinstance(error, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError,
                              httpx2.ProxyError))


def _status(error: HfHubHTTPError) -> int | None:
    response = getattr(error, "response", None)
    return response.status_code if response is not None else None


def _request_text(error: BaseException, endpoint: str) -> str:
    """``POST https://huggingface.co/api/repos/create``: the request that failed, or just the endpoint."""
    response = getattr(error, "response", None)
    try:
        request = response.request if response is not None else getattr(error, "request", None)
    except RuntimeError:
        request = None
    if request is not None:
        return f"{request.method} {request.url.copy_with(query=None)}"
    return endpoint


def _is_dns_failure(error: BaseException) -> bool:
    return any(isinstance(item, socket.gaierror) for item in _chain(error))


def _is_refused(error: BaseException) -> bool:
    return any(isinstance(item, ConnectionRefusedError) for item in _chain(error))


def _host(endpoint: str) -> str:
    return urlsplit(endpoint).hostname or endpoint


def _short_reason(error: BaseException) -> str:
    if isinstance(error, HfHubHTTPError):
        return f"HTTP {_status(error)}"
    if _is_dns_failure(error):
        return "host name not found"
    if _is_refused(error):
        return "connection refused"
    if isinstance(error, httpx2.ConnectTimeout):
        return "no connection in time"
    if isinstance(error, httpx2.TimeoutException):
        return "no answer in time"
    return type(error).__name__


def _server_message(error: HfHubHTTPError, secrets: list[str | None]) -> str:
    text = error.server_message or ""
    if not text and error.response is not None:
        try:
            text = error.response.text
        except Exception:
            text = ""
    text = " ".join(scrub_secrets(text, secrets).split())
    return text if len(text) <= MAX_SERVER_MESSAGE else text[:MAX_SERVER_MESSAGE].rstrip() + "..."


def describe_hub_failure(
    error: BaseException,
    action: str,
    *,
    endpoint: str,
    settings: HubSettings,
    secrets: Iterable[str | None] = (),
    repo: str | None = None,
    attempts: int = 1,
    hint: str = "Then run the same command again.",
) -> HereticError:
    """One paragraph for a Hub or network failure: what failed, where it was sent, what to try."""
    secrets = list(secrets)
    where = _request_text(error, endpoint)
    tried = f", {attempts} attempts" if attempts > 1 else ""
    if isinstance(error, OfflineModeIsEnabled):
        return UserInputError(
            f"HF_HUB_OFFLINE is set, so the Hugging Face Hub was not contacted while {action}. Unset it (or set "
            "HF_HUB_OFFLINE=0) and run the same command again."
        )
    if isinstance(error, HfHubHTTPError):
        status = _status(error)
        server = _server_message(error, secrets)
        said = f" The Hub said: {server}" if server else ""
        said = said if said.endswith((".", "!", "?", "...")) or not said else said + "."
        if status == 401:
            text = (f"The Hugging Face Hub at {endpoint} rejected the token (HTTP 401 at {where}) while {action}: "
                    f"it is invalid, expired or revoked. {LOGIN_HELP}")
        elif status == 403:
            target = f"the repository {repo}" if repo else "that account"
            owner = repo.split("/")[0] if repo and "/" in repo else "that namespace"
            text = (f"The token may not do this (HTTP 403 at {where}) while {action}: it has no write access to "
                    f"{target}. Use a token with write access to '{owner}' (a fine-grained token needs 'write' on "
                    f"that namespace; see {TOKEN_SETTINGS_URL}), or pick a repository under your own user name.")
        elif status == 404:
            text = (f"The Hugging Face Hub answered HTTP 404 (not found) at {where} while {action}.{said} Check the "
                    "repository name and that the token's account can see it (HF_ENDPOINT must point at the Hub "
                    f"you mean). {hint}")
        elif status == 429:
            text = (f"The Hugging Face Hub is rate-limiting these requests (HTTP 429 at {where}{tried}) while "
                    f"{action}. Wait a few minutes. {hint}")
        elif status is not None and status >= 500:
            text = (f"The Hugging Face Hub failed on its side (HTTP {status} at {where}{tried}) while {action}.{said} "
                    f"Wait a few minutes (the Hub's status is at {STATUS_URL}). {hint}")
        else:
            text = (f"The Hugging Face Hub refused the request (HTTP {status} at {where}) while {action}.{said} "
                    f"Check the repository name, the folder and the token. {hint}")
        return NetworkError(scrub_secrets(text, secrets))
    if _is_dns_failure(error):
        text = (f"The host name {_host(endpoint)} of the Hugging Face Hub endpoint {endpoint} could not be resolved "
                f"(DNS failure{tried}) while {action}. Check the network connection, a proxy, and the HF_ENDPOINT "
                f"variable if you set one. {hint}")
    elif _is_refused(error):
        text = (f"The Hugging Face Hub endpoint {endpoint} refused the connection ({where}{tried}) while {action}: "
                "nothing accepts connections there. Check HF_ENDPOINT (if you set one), a proxy or firewall, and "
                f"that the machine is online. {hint}")
    elif isinstance(error, httpx2.ConnectTimeout):
        text = (f"The Hugging Face Hub endpoint {endpoint} did not accept a connection within "
                f"{settings.connect_timeout:g} s ({where}{tried}) while {action}. Check the network, a proxy or "
                f"firewall, or raise hub.connect_timeout for a slow link. {hint}")
    elif isinstance(error, httpx2.TimeoutException):
        text = (f"The Hugging Face Hub endpoint {endpoint} accepted the connection but did not answer within "
                f"{settings.read_timeout:g} s ({where}{tried}) while {action}. The Hub or a proxy on the way is "
                f"stuck or very slow: wait a few minutes, or raise hub.read_timeout for a slow link. {hint}")
    else:
        reason = " ".join(scrub_secrets(str(error), secrets).split()) or type(error).__name__
        text = (f"The connection to the Hugging Face Hub endpoint {endpoint} failed ({where}{tried}: "
                f"{type(error).__name__}: {reason}) while {action}. Check the network connection and a proxy. {hint}")
    return NetworkError(scrub_secrets(text, secrets))


def raise_if_hub_failure(error: BaseException, action: str, *, endpoint: str | None = None,
                         settings: HubSettings | None = None) -> None:
    """Raise the paragraph for ``error`` when the Hub or the network is behind it; otherwise return.

    For callers that reach the Hub through another library (transformers' ``from_pretrained`` of a hub id,
    datasets): their exceptions wrap huggingface_hub's, and a user needs exit 4 and "the Hub refused the
    connection", not exit 2 and a library's message about missing files.
    """
    cause = network_cause(error)
    if cause is None:
        return
    from huggingface_hub import constants

    raise describe_hub_failure(cause, action, endpoint=endpoint or _origin(cause) or constants.ENDPOINT,
                               settings=settings or HubSettings()) from None


def _origin(error: BaseException) -> str | None:
    """``https://huggingface.co`` of the request that failed, when the error knows its request."""
    response = getattr(error, "response", None)
    try:
        request = response.request if response is not None else getattr(error, "request", None)
    except RuntimeError:
        return None
    if request is None:
        return None
    url = request.url
    return f"{url.scheme}://{url.netloc.decode('ascii')}"
