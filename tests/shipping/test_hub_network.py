"""Secrets never survive into a message, and transient Hub failures are retried a bounded number of times."""

from __future__ import annotations

import httpx2
import pytest

from heretic_tui.core.errors import NetworkError
from heretic_tui.core.hub_network import REDACTED, hub_call, scrub_secrets
from heretic_tui.core.settings import HubSettings

REAL_SHAPED = "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {REAL_SHAPED}",
        f"{{'authorization': 'Bearer {REAL_SHAPED}'}}",
        f'"Authorization": "{REAL_SHAPED}"',
        f"token={REAL_SHAPED}&x=1",
        "bearer sk-not-an-hf-token-but-a-bearer",
    ],
)
def test_anything_shaped_like_a_token_is_scrubbed(text: str) -> None:
    cleaned = scrub_secrets(text)
    assert REAL_SHAPED not in cleaned and "sk-not-an-hf-token" not in cleaned and REDACTED in cleaned


def test_the_exact_token_is_scrubbed_whatever_its_shape() -> None:
    secret = "hf_Short_4f9c"
    assert scrub_secrets(f"echo {secret} and {secret}", [secret]) == f"echo {REDACTED} and {REDACTED}"
    plain = "The token may not write to alice/model; use hf_hub_download or hf auth login."
    assert scrub_secrets(plain) == plain, "ordinary words and names are left alone"


def test_transient_failures_are_retried_with_backoff_then_explained() -> None:
    settings = HubSettings(request_retries=2, retry_wait=0.5)
    waits: list[float] = []
    retries: list[str] = []
    request = httpx2.Request("POST", "http://hub.test/api/repos/create")

    def refused() -> None:
        raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(NetworkError) as caught:
        hub_call("creating the repository alice/x", refused, endpoint="http://hub.test", settings=settings,
                 on_retry=retries.append, sleep=waits.append)
    assert waits == [0.5, 1.0] and len(retries) == 2
    assert "POST http://hub.test/api/repos/create, 3 attempts" in str(caught.value)


def test_other_failures_are_not_the_networks() -> None:
    def bug() -> None:
        raise KeyError("not a network problem")

    with pytest.raises(KeyError):
        hub_call("doing x", bug, endpoint="http://hub.test", settings=HubSettings(), sleep=lambda seconds: None)


def test_a_library_error_wrapping_a_hub_failure_becomes_the_paragraph() -> None:
    """transformers raises OSError("We couldn't connect ...") from huggingface_hub's error from httpx2's."""
    from heretic_tui.core.hub_network import raise_if_hub_failure

    request = httpx2.Request("GET", "https://hub.example:8443/api/models/someone/model/revision/main?x=1")
    try:
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError as refused:
                raise httpx2.ConnectError("[Errno 111] Connection refused", request=request) from refused
        except httpx2.ConnectError as connect:
            raise OSError("We couldn't connect to 'https://hub.example:8443' to load the files") from connect
    except OSError as wrapped:
        with pytest.raises(NetworkError) as caught:
            raise_if_hub_failure(wrapped, "loading the tokenizer of someone/model")
    message = str(caught.value)
    assert message.startswith("The Hugging Face Hub endpoint https://hub.example:8443 refused the connection (GET "
                              "https://hub.example:8443/api/models/someone/model/revision/main) while loading the "
                              "tokenizer of someone/model")
    raise_if_hub_failure(OSError("no file named config.json"), "loading")  # not the network's: nothing raised
