"""Backoff for retriable failures: exponential from the node's retry policy, capped, with jitter."""

from __future__ import annotations

import random

from dataworkflows.planning import PlanRetry


def backoff_seconds(policy: PlanRetry, failed_attempt: int, retry_after: float | None = None) -> float:
    """Delay before the attempt after `failed_attempt` (1-based). A server's Retry-After wins
    when it asks for longer."""
    base = policy.initial_delay_seconds * policy.backoff_multiplier ** max(failed_attempt - 1, 0)
    delay = min(base, policy.max_delay_seconds)
    if policy.jitter and delay > 0:
        # "Equal jitter": half fixed, half random, so retries spread out but never collapse to 0.
        delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - not for security
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay_seconds))
    return delay
