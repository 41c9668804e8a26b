"""The scrubber (dataworkflows.scrubbing), its log sinks, what publish checks against allow-lists,
the credentials an attempt sees, and `dataworkflows connections ...`."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from dataworkflows import scrubbing
from dataworkflows.actions import default_registry
from dataworkflows.cli import EXIT_OK, EXIT_USAGE, build_parser
from dataworkflows.credentials import (
    ChainedCredentialProvider,
    Cipher,
    DatabaseCredentialProvider,
    EnvCredentialProvider,
    Secret,
    workflow_allowed,
)
from dataworkflows.data.connections import StoredSecret
from dataworkflows.errors import ConnectionKindMismatch, ConnectionNotAllowed, ConnectionSecretTooShort
from dataworkflows.logs import ScrubbingFilter
from dataworkflows.node_kinds import WorkflowCredentials
from dataworkflows.publishing import ConnectionUse, connection_uses
from dataworkflows.scrubbing import MASK, Scrubber, scrub_log_event
from tests.unit.test_cli_tree import fake_api


def test_trigger_strings_nested_and_long_enough_are_scrubbed() -> None:
    trigger = {"user": {"password": "hunter22", "pin": "123"}, "tags": ["alpha-tag", 12345, True], "n": 7}
    s = Scrubber.for_trigger(trigger)
    assert s.text("login hunter22 with alpha-tag") == f"login {MASK} with {MASK}"
    assert s.text("pin 123 and 12345 stay") == "pin 123 and 12345 stay", "short values and numbers are not scrubbed"


def test_case_escaped_and_url_encoded_forms_are_caught_base64_is_not() -> None:
    s = Scrubber(['Pa ss"wörd/1'])
    assert MASK in s.text('host pa ss"WÖRD/1 refused')
    assert MASK in s.text(json.dumps({"m": 'Pa ss"wörd/1'})), "inside a JSON string"
    assert MASK in s.text("url ?p=Pa%20ss%22w%C3%B6rd%2F1"), "percent-encoded"
    assert MASK in s.text("url ?p=Pa+ss%22w%C3%B6rd%2F1"), "form-encoded"
    assert MASK in s.text(repr('Pa ss"wörd/1')), "inside a repr"
    # A review: "/" kept (Python's quote, JavaScript's encodeURI: a redirect's Location with the
    # token in its query was stored as it was), and JSON's escaped solidus (PHP's json_encode).
    token = Scrubber(["Br3arer/Secret+Value=42"])
    assert (
        token.text("https://cb.example/done?token=Br3arer/Secret%2BValue%3D42")
        == f"https://cb.example/done?token={MASK}"
    )
    assert token.text("?t=Br3arer/Secret+Value=42&x") == f"?t={MASK}&x", "encodeURI keeps + and ="
    assert token.text('{"received": "Bearer Br3arer\\/Secret+Value=42"}') == f'{{"received": "Bearer {MASK}"}}'
    assert MASK in s.text("p=Pa%20ss%22w%C3%B6rd/1"), "encodeURIComponent spells / as %2F; quote keeps it"
    import base64

    encoded = base64.b64encode(b'Pa ss"w\xc3\xb6rd/1').decode()
    assert s.text(f"echo {encoded}") == f"echo {encoded}", "transformed values are not recognised"


def test_longest_match_wins_and_errors_keep_their_names() -> None:
    s = Scrubber(["secret", "secret-and-more"])
    assert s.text("x secret-and-more y") == f"x {MASK} y"
    error = {
        "code": "secret_failed",
        "nodeId": "secret",
        "message": "the secret leaked",
        "cause": {"code": "c", "message": "secret", "details": {"items": ["secret"]}},
    }
    assert s.error(error) == {
        "code": "secret_failed",
        "nodeId": "secret",
        "message": f"the {MASK} leaked",
        "cause": {"code": "c", "message": MASK, "details": {"items": [MASK]}},
    }
    assert Scrubber().error(error) is error


def test_an_error_s_names_are_scrubbed_of_secrets_but_not_of_trigger_values() -> None:
    """A third-party action makes its own code: one made of its credential was recorded as it was."""
    s = Scrubber(["secret"], secrets=["tok3n-value"])
    error = {"code": "refused_TOK3N-value", "nodeId": "secret", "cause": {"code": "secret_failed"}}
    assert s.error(error) == {"code": f"refused_{MASK}", "nodeId": "secret", "cause": {"code": "secret_failed"}}
    assert s.error(error, secrets_only=True)["code"] == f"refused_{MASK}"


def test_secrets_json_values_are_scrubbed_but_not_their_hosts_and_outputs_keep_trigger_values() -> None:
    s = Scrubber.for_trigger({"customer": "ann-the-customer"})
    s.add_secret(json.dumps({"hosts": ["api.example.com"], "headers": {"X-Api-Key": "k-123456"}, "bearer": "tok-abc"}))
    assert s.text("api.example.com said k-123456 / tok-abc") == f"api.example.com said {MASK} / {MASK}"
    outputs = {"body": "hello ann-the-customer, your key is k-123456"}
    assert s.secrets(outputs) == {"body": f"hello ann-the-customer, your key is {MASK}"}
    assert s.text("ann-the-customer") == MASK, "errors and logs scrub trigger values too"
    assert Scrubber.for_trigger({"a": "b"}).secrets(outputs) is outputs


def test_the_trigger_values_scrubbed_are_bounded() -> None:
    s = Scrubber.for_trigger({"items": [f"value-{i:05d}" for i in range(scrubbing.MAX_TRIGGER_VALUES + 10)]})
    assert s.text("value-00000") == MASK
    assert s.text(f"value-{scrubbing.MAX_TRIGGER_VALUES + 5:05d}") != MASK


def test_the_current_scrubber_is_per_run_and_reaches_log_lines() -> None:
    assert scrubbing.current().empty
    event = {"event": "failed", "error": {"message": "bad hunter22"}, "n": 3}
    assert scrub_log_event(None, "info", dict(event)) == event

    async def in_a_task() -> str:
        return scrubbing.current().text("hunter22")

    with scrubbing.scrubbing(Scrubber(["hunter22"])):
        assert scrub_log_event(None, "info", dict(event))["error"] == {"message": f"bad {MASK}"}
        assert asyncio.run(in_a_task()) == MASK, "tasks started by the run inherit it"
    assert scrubbing.current().empty


def test_library_log_records_are_scrubbed_too() -> None:
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "request to %s failed", ("hunter22.io",), None)
    with scrubbing.scrubbing(Scrubber(["hunter22"])):
        assert ScrubbingFilter().filter(record)
    assert record.getMessage() == f"request to {MASK}.io failed"


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_library_records_traceback_is_scrubbed_in_either_format(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A review: with DW_LOG_FORMAT=json the JSON formatter formatted the traceback again from
    exc_info, after the handler's filter had scrubbed the text, and the secret went out."""
    import structlog

    from dataworkflows import logs
    from dataworkflows.logs import configure_logging

    root = logging.getLogger()
    saved, saved_level, saved_config = root.handlers[:], root.level, structlog.get_config()
    root.handlers[:] = []
    try:
        configure_logging(fmt, "info")
        with scrubbing.scrubbing(Scrubber.for_trigger({"password": "hunter2-trigger-secret"})):
            try:
                raise RuntimeError("could not resolve hunter2-trigger-secret.example")
            except RuntimeError:
                logging.getLogger("httpx").error(
                    "request to %s failed", "hunter2-trigger-secret.example", exc_info=True
                )
        err = capsys.readouterr().err
        assert "could not resolve" in err and "hunter2-trigger-secret" not in err, err
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        root.handlers[:] = saved
        root.setLevel(saved_level)
        structlog.configure(**saved_config)
        logs._json_lines = False


def test_publish_finds_the_connections_a_definition_will_use() -> None:
    raw = {
        "nodes": [
            {"id": "a", "actionType": "slack.post-message", "parameters": {"channel": "C", "text": "x"}},
            {"id": "b", "actionType": "http.request", "parameters": {"url": "https://x", "connection": "crm"}},
            {"id": "c", "actionType": "http.request", "parameters": {"url": "https://x"}},
            {
                "id": "d",
                "actionType": "http.request",
                "parameters": {"url": "https://x", "connection": "{{ trigger.c }}"},
            },
            {"id": "e", "actionType": "core.echo", "parameters": {"message": "x"}},
            {
                "id": "f",
                "nodeType": "forEach",
                "parameters": {
                    "items": [1],
                    "action": {"actionType": "monday.get-items", "parameters": {"boardId": 1}},
                },
            },
            {"id": "g", "nodeType": "delay", "parameters": {"connection": "not-an-action"}},
        ]
    }
    assert connection_uses(raw, default_registry()) == (
        ConnectionUse("/nodes/0/parameters/connection", "slack", "slack.post-message", "slack"),
        ConnectionUse("/nodes/1/parameters/connection", "crm", "http.request", "http"),
        ConnectionUse("/nodes/5/parameters/action/parameters/connection", "monday", "monday.get-items", "monday"),
    )


class _Store:
    def __init__(self, allowed: list[str]) -> None:
        self.cipher = Cipher(b"k" * 32)
        self.allowed = allowed

    async def fetch_connection(self, name: str) -> StoredSecret | None:
        if name != "crm":
            return None
        blob = self.cipher.encrypt("stored-token", name)
        return StoredSecret(name=name, kind="slack", secret=blob, key_id="k", allowed_workflows=self.allowed)


async def test_an_attempt_asks_for_credentials_as_its_own_workflow() -> None:
    store = _Store(["billing"])
    provider = ChainedCredentialProvider(
        [DatabaseCredentialProvider(store, store.cipher), EnvCredentialProvider({"DW_CONNECTION_CRM": "env-token"})]
    )
    seen = Scrubber()
    mine = WorkflowCredentials(provider, "billing", seen)
    assert await mine.get("crm") == Secret("stored-token")
    assert seen.text("stored-token") == MASK, "the run's scrubber learns what it resolved"
    other = WorkflowCredentials(provider, "reports", Scrubber())
    with pytest.raises(ConnectionNotAllowed) as refused:
        await other.get("crm", workflow_id="billing")  # an action cannot claim another workflow
    assert "'crm'" in refused.value.message and "reports" in refused.value.message
    assert "stored-token" not in refused.value.message
    assert workflow_allowed(["*"], None) and not workflow_allowed([], "x") and not workflow_allowed(["a"], None)


async def test_an_attempt_gets_a_stored_connection_only_of_its_actions_kind() -> None:
    """The kind comes with the secret (no query of its own); another kind is refused before the
    action sees the secret, and the refusal never quotes it. Environment connections have no kind."""
    store = _Store(["*"])
    provider = ChainedCredentialProvider(
        [DatabaseCredentialProvider(store, store.cipher), EnvCredentialProvider({"DW_CONNECTION_ENV": "env-token"})]
    )
    assert (await provider.get("crm")).kind == "slack" and (await provider.get("env")).kind is None
    slack = WorkflowCredentials(provider, "billing", Scrubber(), action=("slack.post-message", "slack"))
    assert await slack.get("crm") == Secret("stored-token")
    http = WorkflowCredentials(provider, "billing", Scrubber(), action=("http.request", "http"))
    with pytest.raises(ConnectionKindMismatch) as refused:
        await http.get("crm")
    assert refused.value.code == "connection_kind_mismatch"
    assert refused.value.message.startswith("connection 'crm' has kind 'slack', but http.request takes a 'http'")
    assert "stored-token" not in refused.value.message
    assert await http.get("env") == Secret("env-token"), "an environment connection has no kind to check"


async def test_a_connection_too_short_to_scrub_is_never_handed_to_an_action() -> None:
    """An environment connection (or one stored before PUT refused them) under 4 characters: the
    run's scrubber would not look for it, so the attempt fails instead of the action getting it."""
    provider = ChainedCredentialProvider(
        [EnvCredentialProvider({"DW_CONNECTION_PIN": "123", "DW_CONNECTION_OK": "1234"})]
    )
    seen = Scrubber()
    mine = WorkflowCredentials(provider, "billing", seen, action=("http.request", "http"))
    with pytest.raises(ConnectionSecretTooShort) as refused:
        await mine.get("pin")
    assert refused.value.code == "secret_too_short" and "123" not in refused.value.message
    assert "'pin'" in refused.value.message and "shorter than 4 characters" in refused.value.message
    assert await mine.get("ok") == Secret("1234")
    assert seen.text("pin 1234") == f"pin {MASK}"


def run(argv: list[str]) -> int:
    args = build_parser().parse_args([*argv, "--api-url", "http://api"])
    code = args.func(args)
    assert isinstance(code, int)
    return code


CONNECTION = {"name": "crm", "kind": "http", "allowedWorkflows": ["sync"], "keyId": "k"}


def test_cli_connections_put_reads_the_secret_from_a_file_and_allow_replaces_the_list(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"hosts": ["crm.example.com"], "bearer": "t"}')
    seen = fake_api(monkeypatch, 200, CONNECTION)
    assert run(["connections", "put", "crm", "--kind", "http", "--secret-file", str(secret), "--allow", "sync"]) == 0
    assert seen[0].method == "PUT" and seen[0].url.path == "/api/v1/connections/crm"
    assert json.loads(seen[0].content) == {
        "kind": "http",
        "secret": '{"hosts": ["crm.example.com"], "bearer": "t"}',
        "allowedWorkflows": ["sync"],
    }
    assert "used by: sync" in capsys.readouterr().out

    assert run(["connections", "put", "crm", "--kind", "http", "--secret-file", str(secret)]) == EXIT_OK
    assert "allowedWorkflows" not in json.loads(seen[1].content), "omitted: a rotation keeps the list"

    assert run(["connections", "allow", "crm", "--all-workflows"]) == EXIT_OK
    assert seen[2].method == "PATCH" and json.loads(seen[2].content) == {"allowedWorkflows": ["*"]}
    assert run(["connections", "allow", "crm", "--none"]) == EXIT_OK
    assert json.loads(seen[3].content) == {"allowedWorkflows": []}
    assert run(["connections", "allow", "crm"]) == EXIT_USAGE, "an empty list must be asked for"
    assert len(seen) == 4
    assert run(["connections", "put", "crm", "--kind", "http", "--secret-file", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["put", "crm", "--kind", "slack", "--secret-file", "-", "--allow", "sync", "--all-workflows"],
        ["allow", "crm", "--all-workflows", "--allow", "sync"],
        ["allow", "crm", "--none", "--allow", "sync"],
        ["allow", "crm", "--none", "--all-workflows"],
    ],
    ids=["put-all-and-ids", "allow-all-and-ids", "allow-none-and-ids", "allow-none-and-all"],
)
def test_cli_connections_refuse_every_workflow_beside_ids(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """--all-workflows with --allow sent ['*'] and dropped the ids (--none with --allow dropped
    --none): the choices exclude each other, as the API refuses '*' beside ids."""
    seen = fake_api(monkeypatch, 200, CONNECTION)
    with pytest.raises(SystemExit) as exited:
        run(["connections", *argv])
    assert exited.value.code == EXIT_USAGE and seen == []
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_connections_list(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_api(monkeypatch, 200, [CONNECTION, {**CONNECTION, "name": "new", "allowedWorkflows": []}])
    assert run(["connections", "list"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "crm" in out and "used by: sync" in out and "no workflow (allow some first)" in out


def test_letters_whose_lower_case_is_longer_are_scrubbed_too() -> None:
    # 'İ'.lower() is two characters: found by the lower-cased scan, it must still be replaced.
    scrubber = Scrubber(trigger_values=["İstanbul-7781"])
    assert scrubber.text("no route to İstanbul-7781.example") == f"no route to {MASK}.example"


def test_an_error_s_keys_are_scrubbed_too() -> None:
    scrubber = Scrubber(secrets=["hunter2-secret"])
    assert scrubber.error({"code": "x", "details": {"hunter2-secret": 1}}) == {"code": "x", "details": {MASK: 1}}


async def test_an_installed_action_without_a_connector_is_a_core_action() -> None:
    """The action protocol does not require `connector`: an installed package's action without one
    still publishes (its literal connection is checked as a core action's) and gets its services,
    rather than failing every attempt with an AttributeError."""
    import msgspec

    from dataworkflows.actions import ActionRegistry, ActionResult, ActionServices, connector_of
    from dataworkflows.node_kinds import ActionKind

    class PingParams(msgspec.Struct):
        connection: str = "plugin-default"

    class PluginAction:
        type_name = "acme.ping"
        description = "pings"
        Params = PingParams

        async def execute(self, ctx: Any, params: Any) -> ActionResult:
            return ActionResult.succeeded({})

    registry = ActionRegistry()
    registry.register(PluginAction())
    assert connector_of(registry.get("acme.ping")) == "core"
    raw = {"nodes": [{"id": "p", "actionType": "acme.ping", "parameters": {"connection": "c1"}}]}
    assert connection_uses(raw, registry) == (
        ConnectionUse("/nodes/0/parameters/connection", "c1", "acme.ping", "core"),
    )
    services = ActionServices(credentials=object(), http=None, resources=object())  # type: ignore[arg-type]
    kind = ActionKind(registry, templates=object(), services=services)  # type: ignore[arg-type]
    assert kind._services_for("billing", registry.get("acme.ping")) is not None


def test_an_action_scrubs_its_secrets_whatever_their_case() -> None:
    """A security review: an http.request whose server echoed the bearer token lower-cased (in a
    Content-Encoding it could not decode) kept it in its error: the action's own scrub matched the
    token's case only, unlike the run's scrubber."""
    from dataworkflows.actions.web import scrub

    assert scrub("cannot decode the response: bearer supersecrettok3n", ["SuperSecretTok3n"]) == (
        "cannot decode the response: bearer [redacted]"
    )
    assert scrub({"SUPERSECRETTOK3N": ["x SuperSecretTok3n"]}, ["SuperSecretTok3n", "Sup"]) == {
        "[redacted]": ["x [redacted]"]
    }


def test_an_action_s_scrub_of_a_large_body_without_its_secrets_leaves_it_be() -> None:
    """A case-insensitive pattern cannot skip ahead to a literal: http.request's scrub of a 50 MB
    response body (maxResponseBytes allows it) held the event loop for about a second, where the
    case-sensitive replace it took over from took 0.02 s (a review). A text holding none of the
    secrets, whatever their case, is now left as it is after one substring scan."""
    from dataworkflows.actions.web import scrub

    body = "the quick brown fox jumps over the lazy dog; " * 1_100_000  # about 50 MB
    secrets = ["SuperSecretTok3n", '{"hosts": ["api.example.com"], "bearer": "SuperSecretTok3n"}']
    assert scrub({"body": body}, secrets)["body"] is body  # how fast: bench, not a timed test
    # Still every spelling the pattern takes: its case, a long s (U+017F), and a Turkish locale's
    # dotless i (U+0131, 'I' lower-cased) and dotted capital I (U+0130, 'i' upper-cased).
    for echoed in (
        "SUPERSECRETTOK3N-ID",
        "super\u017fecrettok3n-id",
        "SuperSecretTok3n-\u0131D",
        "SUPERSECRETTOK3N-\u0130D",
    ):
        assert scrub(f"x {body[:20]} {echoed}", ["SuperSecretTok3n-id"]) == f"x {body[:20]} [redacted]", echoed


def test_the_run_s_scrubber_finds_a_secret_a_turkish_locale_cased() -> None:
    """Its pattern ignores case as Python's re does (a dotless i and a dotted capital I are an i, a
    long s an s), but it ran only when a lower-cased scan of the text found a secret first: a token
    a server echoed through a Turkish locale's case mapping ('I' lower-cased to a dotless i) was
    shown, in an error or in outputs (a review)."""
    s = Scrubber(secrets=["SuperSecretTok3n-id"])
    for echoed in ("SuperSecretTok3n-\u0131D", "SUPERSECRETTOK3N-\u0130D", "Super\u017fecretTok3n-id"):
        assert s.secrets(f"x {echoed} y") == f"x {MASK} y", echoed
        assert s.text(f"x {echoed} y") == f"x {MASK} y", echoed
    assert s.secrets("x SuperSecretTok3n-ix y") == "x SuperSecretTok3n-ix y"
