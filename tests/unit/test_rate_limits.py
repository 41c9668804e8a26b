"""The API rate limit's token bucket arithmetic and headers, the definition's limits, and
`dataworkflows workflows limits` (the API faked with httpx's MockTransport)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataworkflows.cli import EXIT_OK, EXIT_USAGE, build_parser
from dataworkflows.errors import ConfigurationError
from dataworkflows.rate_limits import BucketPolicy
from dataworkflows.validation import validate_definition
from tests.unit.test_cli_tree import fake_api


def test_a_granted_request_reports_what_is_left() -> None:
    policy = BucketPolicy(per_minute=600, burst=100)
    decision = policy.decide(tokens=41.7, granted=True)
    assert decision.headers() == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "41",
        # 58.3 tokens to refill at 10 a second.
        "RateLimit-Reset": "6",
        "RateLimit-Policy": "100;w=10",
    }


def test_a_refused_request_says_when_to_retry() -> None:
    policy = BucketPolicy(per_minute=60, burst=3)
    decision = policy.decide(tokens=0.2, granted=False)
    headers = decision.headers()
    assert not decision.granted
    # 0.8 of a token at one a second: an integer, rounded up.
    assert headers["Retry-After"] == "1" and headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Reset"] == "3" and headers["RateLimit-Policy"] == "3;w=3"
    slow = BucketPolicy(per_minute=1, burst=1).decide(tokens=0.0, granted=False)
    assert slow.retry_after == 60
    # Never 0, however little is missing.
    assert BucketPolicy(per_minute=600, burst=5).decide(tokens=0.999, granted=False).retry_after == 1


def test_settings_turn_it_off_or_refuse_nonsense() -> None:
    assert BucketPolicy.from_settings(0, 100) is None
    assert BucketPolicy.from_settings(600, 100) == BucketPolicy(600, 100)
    for per_minute, burst in [(-1, 10), (600, 0)]:
        with pytest.raises(ConfigurationError):
            BucketPolicy.from_settings(per_minute, burst)


def _definition(**orchestration: Any) -> dict[str, Any]:
    return {
        "id": "limited",
        "displayName": "Limited",
        "startNode": "a",
        "nodes": [{"id": "a", "actionType": "core.echo", "parameters": {"message": "hi"}}],
        "orchestration": orchestration,
    }


def test_a_definition_may_state_its_limits() -> None:
    assert validate_definition(_definition(maxConcurrentExecutions=3, rateLimitPerMinute=60)) == []
    assert validate_definition(_definition(maxConcurrentExecutions=None, rateLimitPerMinute=None)) == []
    problems = validate_definition(_definition(maxConcurrentExecutions=0, rateLimitPerMinute=60_001))
    assert {(p.pointer, p.code) for p in problems} == {
        ("/orchestration/maxConcurrentExecutions", "range"),
        ("/orchestration/rateLimitPerMinute", "range"),
    }
    assert validate_definition(_definition(rateLimitPerMinute="fast"))


WORKFLOW = {"id": "nightly", "maxConcurrentExecutions": 2, "rateLimitPerMinute": None}


def run(argv: list[str]) -> int:
    args = build_parser().parse_args([*argv, "--api-url", "http://api"])
    code = args.func(args)
    assert isinstance(code, int)
    return code


def test_limits_sets_and_clears(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen = fake_api(monkeypatch, 200, WORKFLOW)
    assert run(["workflows", "limits", "nightly", "--max-concurrent", "2", "--clear-per-minute"]) == EXIT_OK
    assert (seen[0].method, seen[0].url.path) == ("PATCH", "/api/v1/workflows/nightly/limits")
    assert json.loads(seen[0].content) == {"maxConcurrentExecutions": 2, "rateLimitPerMinute": None}
    assert "maxConcurrentExecutions 2  rateLimitPerMinute none" in capsys.readouterr().out

    assert run(["workflows", "limits", "nightly", "--clear"]) == EXIT_OK
    assert json.loads(seen[1].content) == {"maxConcurrentExecutions": None, "rateLimitPerMinute": None}
    assert run(["workflows", "limits", "nightly", "--per-minute", "60"]) == EXIT_OK
    assert json.loads(seen[2].content) == {"rateLimitPerMinute": 60}


def test_limits_without_options_shows_them(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen = fake_api(monkeypatch, 200, WORKFLOW)
    assert run(["workflows", "limits", "a/b"]) == EXIT_OK
    assert (seen[0].method, seen[0].url.raw_path) == ("GET", b"/api/v1/workflows/a%2Fb")
    assert "nightly  maxConcurrentExecutions 2" in capsys.readouterr().out


def test_limits_refuses_a_value_and_its_clearing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_api(monkeypatch, 200, WORKFLOW)
    assert run(["workflows", "limits", "nightly", "--per-minute", "5", "--clear"]) == EXIT_USAGE
    assert seen == [] and "not both" in capsys.readouterr().err


def test_limits_reports_the_api_s_refusal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_api(monkeypatch, 400, {"title": "Bad request", "detail": "Expected `int` >= 1"})
    assert run(["workflows", "limits", "nightly", "--max-concurrent", "5"]) == EXIT_USAGE
    assert "HTTP 400: Expected `int` >= 1" in capsys.readouterr().err


def _request(path_template: str, *, state: dict[str, Any] | None = None, headers: list[Any] | None = None) -> Any:
    from litestar import Request

    scope = {
        "type": "http",
        "method": "GET",
        "path": path_template.replace("{trigger_id:str}", "t-1"),
        "path_template": path_template,
        "path_params": {"trigger_id": "t-1"} if "trigger_id" in path_template else {},
        "headers": headers or [],
        "query_string": b"",
        "client": ("10.0.0.7", 4242),
        "state": state or {},
    }
    return Request(scope)  # type: ignore[arg-type]


async def test_the_bucket_key_names_tenant_and_caller() -> None:
    from types import SimpleNamespace

    from dataworkflows.api.principals import HeaderPrincipalResolver
    from dataworkflows.api.rate_limits import caller_key

    svc: Any = SimpleNamespace(principals=HeaderPrincipalResolver())
    named = _request("/api/v1/workflows", headers=[(b"x-principal-id", b"ana")])
    assert await caller_key(named, svc) == ("default", "principal:ana")
    assert await caller_key(_request("/api/v1/workflows"), svc) == ("default", "address:10.0.0.7")
    assert await caller_key(_request("/api/v1/hooks/{trigger_id:str}"), svc) == ("-", "hook-sender:10.0.0.7")
    tenant = _request("/api/v1/workflows", headers=[(b"x-principal-id", b"ana"), (b"x-tenant-id", b"acme")])
    assert await caller_key(tenant, svc) == ("acme", "principal:ana")
    # A caller the resolver refuses (here a malformed tenant) draws from its address's bucket; the
    # auth guard answers the refusal afterwards.
    refused = _request("/api/v1/workflows", headers=[(b"x-tenant-id", b"*")])
    assert await caller_key(refused, svc) == ("default", "address:10.0.0.7")
