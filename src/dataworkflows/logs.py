"""structlog configuration: JSON lines in production, readable console output for `up`."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

from dataworkflows.scrubbing import current as current_scrubber
from dataworkflows.scrubbing import scrub_log_event

# Parameter and header names whose values are never logged.
SECRET_KEYS = frozenset(
    {"password", "secret", "token", "authorization", "api_key", "apikey", "client_secret", "access_token"}
)


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


class ScrubbingFilter(logging.Filter):
    """Libraries' own log records (httpx, psycopg, Procrastinate), scrubbed like structlog's lines
    while a run executes: the message, and the traceback as it will be printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrubber = current_scrubber()
        if scrubber.empty:
            return True
        record.msg, record.args = scrubber.text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrubber.text(record.exc_text)
        return True


class RepeatFilter(logging.Filter):
    """psycopg_pool's warnings while the database is away, said once per `window` seconds: each pool
    warns at every attempt to connect (every 2 s at most, CappedReconnect), so a worker waiting 30 s
    for its database printed 16 of the same two-line warning before its one-line error, and an outage
    of an hour some 1,800 per pool (a review). A record whose text was said less than `window`
    seconds ago is dropped and counted; the next one let through says how many were."""

    def __init__(self, window: float = 30.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        # By text: when it was last let through, and how many were dropped since.
        self._said: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        now = self._clock()
        said = self._said.get(text)
        if said is not None and now - said[0] < self._window:
            self._said[text] = (said[0], said[1] + 1)
            return False
        if len(self._said) >= 256:
            self._said.clear()  # texts that vary without end (they name a pid, say): keep the memory bounded
        self._said[text] = (now, 0)
        if said is not None and said[1]:
            record.msg, record.args = f"{text} (and {said[1]} more like it since it was last said)", None
        return True


# The libraries whose warnings repeat while the database is away.
_REPEATING_LOGGERS = ("psycopg.pool",)


def processors(renderer: Any) -> list[Any]:
    """The processor chain: a run's trigger values and secrets are scrubbed from every line written
    while it executes (dataworkflows.scrubbing), after the exception is formatted, so its text too."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        scrub_log_event,
        renderer,
    ]


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=processors(renderer),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format=_PLAIN)
    for name in _REPEATING_LOGGERS:
        library = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in library.filters):
            library.addFilter(RepeatFilter())
    global _json_lines
    _json_lines = fmt == "json"
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
            handler.addFilter(ScrubbingFilter())
        if _json_lines:
            # Libraries' records (psycopg's pool warnings while the database is away, two lines of
            # text each) as JSON lines too: a log shipper read them as junk exactly then (ops review).
            handler.setFormatter(
                structlog.stdlib.ProcessorFormatter(
                    processors=[
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info,
                        # The traceback formatted here again (from exc_info) is scrubbed too: the
                        # handler's ScrubbingFilter scrubbed only the text the plain format uses, and
                        # a secret in a library's exception went out in JSON lines (a review).
                        scrub_log_event,
                        structlog.processors.JSONRenderer(),
                    ],
                    foreign_pre_chain=[
                        structlog.stdlib.add_logger_name,
                        structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso", utc=True),
                    ],
                )
            )
        else:
            handler.setFormatter(logging.Formatter(_PLAIN))


_json_lines = False
_PLAIN = "%(levelname)s %(name)s: %(message)s"


def notice(text: str) -> str:
    """A line written outside structlog (a stop signal's notice, from its handler), as the chosen
    format writes lines: with DW_LOG_FORMAT=json a JSON object, not plain text among JSON lines."""
    if not _json_lines:
        return text
    import json
    from datetime import UTC, datetime

    return json.dumps({"event": text, "level": "warning", "timestamp": datetime.now(UTC).isoformat()})
