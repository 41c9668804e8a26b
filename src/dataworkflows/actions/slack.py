"""slack.post-message: Slack's chat.postMessage, with Slack's error semantics.

`ok: false` answers carry an error code: ratelimited and Slack's own transient errors are
retriable (Retry-After honoured); channel_not_found, not_in_channel, invalid_auth and the rest are
permanent. HTTP 408, 425, 429, 500, 502, 503 and 504 are retriable. Outputs: channel, ts (the message id) and threadTs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import msgspec

from dataworkflows.actions import ActionContext, ActionResult
from dataworkflows.actions.web import (
    RETRIABLE_STATUSES,
    ResponseTooLarge,
    UnsupportedEncoding,
    post_json,
    remote_code,
    retry_after_seconds,
    scrub_result,
    secret_for,
    transport_failure,
)
from dataworkflows.http_client import BlockedDestination

DEFAULT_API_URL = "https://slack.com/api"
RETRIABLE_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackPostMessageParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    channel: str
    text: str | None = None
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    unfurl_links: bool | None = None
    # The connection holding the bot token (xoxb-...).
    connection: str = "slack"

    def __post_init__(self) -> None:
        if not self.text and not self.blocks:
            raise ValueError("give text or blocks")
        if not self.channel.strip():
            raise ValueError("channel must not be empty")


class SlackPostMessageAction:
    type_name: ClassVar[str] = "slack.post-message"
    description: ClassVar[str] = "Posts a message with chat.postMessage; outputs channel and ts."
    connector: ClassVar[str] = "slack"
    Params: ClassVar[type[msgspec.Struct]] = SlackPostMessageParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        assert isinstance(params, SlackPostMessageParams)
        services = ctx.require_services()
        secret = await secret_for(services, params.connection)
        if isinstance(secret, ActionResult):
            return secret
        return scrub_result(await self._post(services, params, secret.reveal()), [secret.reveal()])

    async def _post(self, services: Any, params: SlackPostMessageParams, token: str) -> ActionResult:
        base = services.endpoints.get("slack", DEFAULT_API_URL).rstrip("/")
        client: httpx.AsyncClient = services.http
        try:
            response, body = await post_json(
                client,
                f"{base}/chat.postMessage",
                _payload(params),
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
            )
        except (httpx.HTTPError, OSError, BlockedDestination) as exc:
            return transport_failure(exc, "Slack")
        except (ResponseTooLarge, UnsupportedEncoding) as exc:
            return ActionResult.failed("slack_bad_response", f"Slack's answer cannot be read: {type(exc).__name__}")
        return _outcome(response, body)


def _payload(params: SlackPostMessageParams) -> dict[str, Any]:
    """chat.postMessage's arguments; optional ones only when given."""
    payload: dict[str, Any] = {"channel": params.channel}
    if params.text:
        payload["text"] = params.text
    if params.blocks:
        payload["blocks"] = params.blocks
    if params.thread_ts:
        payload["thread_ts"] = params.thread_ts
    if params.unfurl_links is not None:
        payload["unfurl_links"] = params.unfurl_links
    return payload


def _outcome(response: httpx.Response, body: Any) -> ActionResult:
    if response.status_code == 429 or response.status_code in RETRIABLE_STATUSES:
        return ActionResult.retriable(
            "slack_ratelimited" if response.status_code == 429 else f"slack_http_{response.status_code}",
            f"Slack answered HTTP {response.status_code}",
            retry_after_seconds(response),
        )
    if not isinstance(body, dict):
        return ActionResult.failed("slack_bad_response", f"Slack answered HTTP {response.status_code} without JSON")
    if body.get("ok") is True:
        return ActionResult.succeeded(_outputs(body))
    error = str(body.get("error") or "unknown_error")
    if error in RETRIABLE_ERRORS:
        return ActionResult.retriable(f"slack_{error}", f"Slack: {error}", retry_after_seconds(response))
    return ActionResult.failed(remote_code("slack", error), f"Slack refused the message: {error}")


def _outputs(body: dict[str, Any]) -> dict[str, Any]:
    outputs = {"channel": body.get("channel"), "ts": body.get("ts")}
    message = body.get("message")
    if isinstance(message, dict) and message.get("thread_ts"):
        outputs["threadTs"] = message["thread_ts"]
    return outputs
