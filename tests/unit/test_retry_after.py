"""Retry-After as an HTTP date, on a worker host whose clock is off the database's (dataworkflows.clock):
counted from the answer's Date, else from the database's clock, never from the host's (a review)."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from dataworkflows import clock
from dataworkflows.actions import web
from dataworkflows.actions.web import retry_after_seconds


@pytest.fixture
def host_an_hour_behind(monkeypatch: pytest.MonkeyPatch) -> float:
    """This host's clock (time.time, clock._wall) an hour behind the true one, the offset measured.
    Returns the true time."""
    true = time.time()
    monkeypatch.setattr(time, "time", lambda: true - 3600)
    monkeypatch.setattr(clock, "_wall", lambda: true - 3600)
    monkeypatch.setattr(clock.CLOCK, "offset", 3600.0)
    return true


def test_an_http_date_is_counted_from_the_answers_date(host_an_hour_behind: float) -> None:
    true = host_an_hour_behind
    headers = {
        "Retry-After": email.utils.formatdate(true + 60, usegmt=True),
        "Date": email.utils.formatdate(true, usegmt=True),
    }
    seconds = retry_after_seconds(httpx.Response(429, headers=headers))
    assert seconds is not None and 59 <= seconds <= 61, seconds


def test_without_a_date_an_http_date_is_counted_by_the_databases_clock(host_an_hour_behind: float) -> None:
    """It was counted from this host's clock: an hour behind, "in a minute" was the hour's cap."""
    true = host_an_hour_behind
    response = httpx.Response(429, headers={"Retry-After": email.utils.formatdate(true + 60, usegmt=True)})
    seconds = retry_after_seconds(response)
    assert seconds is not None and 58 <= seconds <= 61, seconds


def test_delta_seconds_and_what_is_no_date_are_as_before() -> None:
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "120"})) == 120.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "7200"})) == 3600.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    past = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT", "Date": "Wed, 21 Oct 2015 07:29:00 GMT"}
    assert retry_after_seconds(httpx.Response(503, headers=past)) == 0.0
    # A Date that is no date: the database's clock.
    zoneless = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000", "Date": "garbage"}
    assert retry_after_seconds(httpx.Response(503, headers=zoneless)) == 0.0
    assert web._http_date("Wed, 21 Oct 2015 07:28:00 -0000") == web._http_date("Wed, 21 Oct 2015 07:28:00 GMT")
