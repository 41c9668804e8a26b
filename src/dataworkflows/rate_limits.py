"""The API's rate limit per caller: a token bucket (the level lives in PostgreSQL, see
take_api_token in sql/queries/limits.sql) and the headers that describe it.

Headers follow draft-ietf-httpapi-ratelimit-headers-07 (the last draft with separate fields):
`RateLimit-Limit` is the bucket's size (the burst), `RateLimit-Remaining` the whole tokens left,
`RateLimit-Reset` the seconds until the bucket is full again, and `RateLimit-Policy` is
`<burst>;w=<seconds to refill the whole bucket>`. A refused request also gets `Retry-After`: the
seconds until one token is back (an integer, at least 1).

Pure module: no database or HTTP imports."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dataworkflows.errors import ConfigurationError

# A workflow's limits (orchestration.maxConcurrentExecutions and rateLimitPerMinute in a definition,
# PATCH /api/v1/workflows/{id}/limits): their ranges, as the database's check constraints have them.
MAX_CONCURRENT_EXECUTIONS = 2**31 - 1
MAX_RATE_PER_MINUTE = 60_000


@dataclass(frozen=True)
class BucketPolicy:
    """Refills at per_minute tokens a minute, holds at most burst."""

    per_minute: int
    burst: int

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.burst < 1:
            raise ConfigurationError(
                f"a rate limit needs at least 1 request a minute and a burst of at least 1 "
                f"(got {self.per_minute} a minute, burst {self.burst})"
            )

    @classmethod
    def from_settings(cls, per_minute: int, burst: int) -> BucketPolicy | None:
        """The policy for DW_API_RATE_PER_MINUTE and DW_API_RATE_BURST; None when it is off (0)."""
        if per_minute == 0:
            return None
        return cls(per_minute, burst)

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    @property
    def window_seconds(self) -> int:
        """How long an empty bucket takes to fill."""
        return max(1, math.ceil(self.burst / self.per_second))

    def decide(self, *, tokens: float, granted: bool) -> RateDecision:
        """What the bucket's answer (tokens left after this request, whether it got one) means."""
        tokens = max(0.0, min(float(self.burst), tokens))
        retry_after = None if granted else max(1, math.ceil((1.0 - tokens) / self.per_second))
        return RateDecision(
            granted=granted,
            limit=self.burst,
            remaining=math.floor(tokens),
            reset_seconds=max(0, math.ceil((self.burst - tokens) / self.per_second)),
            retry_after=retry_after,
            policy=f"{self.burst};w={self.window_seconds}",
        )


@dataclass(frozen=True)
class RateDecision:
    granted: bool
    limit: int
    remaining: int
    reset_seconds: int
    # Only when refused: whole seconds until a token is back (>= 1).
    retry_after: int | None
    policy: str

    def headers(self) -> dict[str, str]:
        """The RateLimit fields (and Retry-After when refused)."""
        found = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": self.policy,
        }
        if self.retry_after is not None:
            found["Retry-After"] = str(self.retry_after)
        return found
