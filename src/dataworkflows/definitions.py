"""Workflow definition types (the seeds' JSON, camelCase), durations and canonical checksums.

Pure module: no database or HTTP imports.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any

import msgspec


class EdgeWhen(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    ALWAYS = "always"


class RoutePolicy(StrEnum):
    PARALLEL = "parallel"
    FIRST_MATCH = "firstMatch"


class NodeType(StrEnum):
    ACTION = "action"
    # Waiting kinds (dataworkflows.waits): a timer, a named signal, people's decisions.
    DELAY = "delay"
    SIGNAL = "signal"
    APPROVAL = "approval"
    # A JavaScript expression whose value becomes the node's outputs (dataworkflows.transforms).
    TRANSFORM = "transform"
    # A child execution of another workflow (dataworkflows.subworkflows).
    SUBWORKFLOW = "subworkflow"
    # An action per element of a list, each item checkpointed (dataworkflows.foreach).
    FOR_EACH = "forEach"


class Edge(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    target_node: str
    when: EdgeWhen = EdgeWhen.SUCCESS
    condition: str | None = None


class RetryPolicy(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    max_attempts: int = 3
    initial_delay: str = "PT1S"
    backoff_multiplier: float = 2.0
    max_delay: str = "PT5M"
    jitter: bool = True


class Compensation(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """What undoes a node's effect when its run does not succeed (a saga's compensating action): an
    action run after the run's end, for each node that had Succeeded, the last to succeed first."""

    action_type: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    retry_policy: RetryPolicy | None = None
    timeout: str | None = None


# The ends of a run that start its compensations (orchestration.compensateOn; all three by default).
COMPENSATE_ON = ("Failed", "TimedOut", "Cancelled")


class Orchestration(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    max_parallel_actions: int = 10
    default_action_timeout: str = "PT5M"
    workflow_timeout: str | None = None
    retry_policy: RetryPolicy | None = None
    # The workflow's start limits for root runs: publishing a version that states them sets them
    # (null clears; left out keeps what the API or CLI set). Enforced when a run starts.
    max_concurrent_executions: int | None = None
    rate_limit_per_minute: int | None = None
    # Its runs' priority when the start request gives none (children: their parent's); 0 if unset.
    priority: int | None = None
    # The ends of a run that run its nodes' compensations (None: every one of COMPENSATE_ON).
    compensate_on: tuple[str, ...] | None = None


class Node(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    id: str
    # Required for action nodes; other kinds have none.
    action_type: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    edges: tuple[Edge, ...] = ()
    retry_policy: RetryPolicy | None = None
    timeout: str | None = None
    route_policy: RoutePolicy = RoutePolicy.PARALLEL
    rerender_on_retry: bool = False
    node_type: NodeType = NodeType.ACTION
    description: str | None = None
    # An action node's compensating action (see Compensation).
    compensation: Compensation | None = None


class WorkflowDefinition(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    id: str
    display_name: str
    start_node: str
    nodes: tuple[Node, ...]
    description: str | None = None
    orchestration: Orchestration = msgspec.field(default_factory=Orchestration)
    metadata: dict[str, Any] | None = None
    # The run's own outputs: templates over trigger and nodes, rendered when the run succeeds.
    outputs: dict[str, Any] | None = None

    @property
    def has_edges(self) -> bool:
        return any(node.edges for node in self.nodes)


def parse_definition(raw: Any) -> WorkflowDefinition:
    """Convert an already validated JSON object into a WorkflowDefinition."""
    return msgspec.convert(raw, WorkflowDefinition)


# ISO 8601 durations as the seeds write them ("PT5M", "PT1H", "PT0.5S", "P1DT2H"), and weeks ("P2W", and
# "P1W2D" as ISO 8601-2 and most parsers allow). Years and months are not a fixed number of seconds.
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


# A duration with years or months (P1Y, P2M, P1Y2M3D): ISO 8601, but of no fixed length.
_CALENDAR = re.compile(r"^P(?=[\d.]*[YM])(?:\d+(?:\.\d+)?Y)?(?:\d+(?:\.\d+)?M)?(?:\d+(?:\.\d+)?[WD])*(?:T.*)?$")


def parse_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration such as PT5M; ValueError when it is not one."""
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None:
        if isinstance(text, str) and _CALENDAR.match(text.strip().upper()):
            raise ValueError(
                f"{text!r}: years and months are not a fixed length; give weeks or days (P4W, P30D, P365D)"
            )
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT30S, PT5M or PT1H")
    parts = {key: float(value) for key, value in match.groupdict().items() if value is not None}
    if not parts:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT30S, PT5M or PT1H")
    return (
        parts.get("weeks", 0.0) * 7 * 86400
        + parts.get("days", 0.0) * 86400
        + parts.get("hours", 0.0) * 3600
        + parts.get("minutes", 0.0) * 60
        + parts.get("seconds", 0.0)
    )


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal documents give equal bytes."""
    return msgspec.json.encode(value, order="sorted")


def checksum(definition: dict[str, Any]) -> str:
    """sha256 of the canonical form; key order and whitespace do not change it."""
    return "sha256:" + hashlib.sha256(canonical_json(definition)).hexdigest()
