"""Examples for the OpenAPI document: the main request bodies and answers, by operation id.

Tests check each against its schema in the document, and each workflow definition against the
validator, so an example that stops being true fails a test."""

from __future__ import annotations

from typing import Any

EXECUTION_ID = "0193a4c2-7d1e-7b3a-9f0e-5c2d8e4b1a60"
CHECKSUM = "sha256:3f1c0d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e"

SIMPLE_ECHO: dict[str, Any] = {
    "id": "simple-echo",
    "displayName": "Simple Echo Workflow",
    "startNode": "echo1",
    "nodes": [
        {"id": "echo1", "actionType": "core.echo", "parameters": {"message": "Hello from node 1"}},
        {"id": "echo2", "actionType": "core.echo", "parameters": {"message": "Hello {{ trigger.userId }}"}},
    ],
}

ORDER_GRAPH: dict[str, Any] = {
    "id": "order-intake",
    "displayName": "Order intake",
    "description": "Checks an order, asks a person above 1000, then notifies the shop",
    "startNode": "check",
    "orchestration": {
        "maxParallelActions": 5,
        "defaultActionTimeout": "PT30S",
        "workflowTimeout": "P2D",
        "retryPolicy": {"maxAttempts": 3, "initialDelay": "PT1S", "backoffMultiplier": 2, "maxDelay": "PT1M"},
    },
    "nodes": [
        {
            "id": "check",
            "nodeType": "transform",
            "parameters": {"expression": "({ total: trigger.amount, large: trigger.amount > 1000 })"},
            "edges": [
                {"targetNode": "approve", "condition": "nodes.check.large"},
                {"targetNode": "notify", "condition": "!nodes.check.large"},
            ],
            "routePolicy": "firstMatch",
        },
        {
            "id": "approve",
            "nodeType": "approval",
            "parameters": {"approvers": ["alice", "bob"], "quorum": "any", "timeout": "P1D", "title": "Large order"},
            "edges": [{"targetNode": "notify"}],
        },
        {
            "id": "notify",
            "actionType": "http.request",
            "parameters": {
                "url": "https://shop.example/hooks/orders",
                "method": "POST",
                "json": {"orderId": "{{ trigger.orderId }}", "total": "{{ nodes.check.total }}"},
            },
            "retryPolicy": {"maxAttempts": 5},
            "timeout": "PT10S",
        },
    ],
    "outputs": {"total": "{{ nodes.check.total }}"},
}

WORKFLOW_READ: dict[str, Any] = {
    "id": "simple-echo",
    "displayName": "Simple Echo Workflow",
    "description": None,
    "status": "Draft",
    "currentVersion": None,
    "latestVersion": 1,
    "isEnabled": True,
    "maxConcurrentExecutions": None,
    "rateLimitPerMinute": None,
    "createdAt": "2026-01-15T10:00:00.123456Z",
    "createdBy": "alice",
    "updatedAt": "2026-01-15T10:00:00.123456Z",
    "archivedAt": None,
    "archivedBy": None,
    "templateId": None,
    "templateVersion": None,
    "definition": SIMPLE_ECHO,
    "checksum": CHECKSUM,
    "retentionDays": None,
    "disabledAt": None,
    "disabledBy": None,
}

EXECUTE_RESPONSE: dict[str, Any] = {
    "executionId": EXECUTION_ID,
    "status": "Pending",
    "statusUrl": f"/api/v1/executions/{EXECUTION_ID}",
    "workflowId": "simple-echo",
    "workflowVersion": 1,
    "requestId": "order-1042",
    "created": True,
}

_NODE_DONE = {
    "actionType": "core.echo",
    "status": "Succeeded",
    "attempts": 1,
    "error": None,
    "nextAttemptAt": None,
    "interruptions": 0,
}

EXECUTION_READ: dict[str, Any] = {
    "id": EXECUTION_ID,
    "workflowId": "simple-echo",
    "workflowVersion": 1,
    "workflowChecksum": CHECKSUM,
    "requestId": "order-1042",
    "status": "Succeeded",
    "trigger": {"userId": "test-user-123"},
    "principalId": "alice",
    "principalType": "user",
    "correlationId": "order-1042",
    "createdAt": "2026-01-15T10:00:00.100000Z",
    "startTime": "2026-01-15T10:00:00.180000Z",
    "endTime": "2026-01-15T10:00:00.260000Z",
    "error": None,
    "recoveryCount": 0,
    "nodes": [
        {
            **_NODE_DONE,
            "nodeId": "echo1",
            "outputs": {"echo": "Hello from node 1"},
            "startTime": "2026-01-15T10:00:00.190000Z",
            "endTime": "2026-01-15T10:00:00.200000Z",
        },
        {
            **_NODE_DONE,
            "nodeId": "echo2",
            "outputs": {"echo": "Hello test-user-123"},
            "startTime": "2026-01-15T10:00:00.220000Z",
            "endTime": "2026-01-15T10:00:00.240000Z",
        },
    ],
    "cancelRequestedAt": None,
    "cancelRequestedBy": None,
    "suspendRequestedAt": None,
    "suspendedAt": None,
    "outputs": None,
    "parentExecutionId": None,
    "parentNodeId": None,
    "rootExecutionId": EXECUTION_ID,
    "depth": 0,
    "children": [],
    "childCount": 0,
    "triggerId": None,
    "worker": None,
    "leaseExpiresAt": None,
    "priority": 0,
    "compensation": None,
}

# A run whose last node failed: the compensations of the two before it ran, the later one first.
EXECUTION_COMPENSATED: dict[str, Any] = {
    **EXECUTION_READ,
    "workflowId": "book-trip",
    "status": "Failed",
    "trigger": {"trip": "T-88"},
    "error": {"code": "node_failed", "message": "node ship failed: simulated_permanent_failure"},
    "nodes": [
        {
            **_NODE_DONE,
            "nodeId": "reserve",
            "outputs": {"echo": "R-1"},
            "startTime": "2026-01-15T10:00:00.190000Z",
            "endTime": "2026-01-15T10:00:00.200000Z",
        },
        {
            **_NODE_DONE,
            "nodeId": "charge",
            "outputs": {"echo": "C-7"},
            "startTime": "2026-01-15T10:00:00.190000Z",
            "endTime": "2026-01-15T10:00:00.200000Z",
        },
        {
            **_NODE_DONE,
            "nodeId": "ship",
            "status": "Failed",
            "outputs": None,
            "error": {"code": "simulated_permanent_failure", "message": "Simulated permanent failure"},
            "startTime": "2026-01-15T10:00:00.190000Z",
            "endTime": "2026-01-15T10:00:00.200000Z",
        },
    ],
    "outputs": None,
    "compensation": {
        "status": "Compensated",
        "steps": [
            {
                "nodeId": "charge",
                "position": 1,
                "actionType": "core.echo",
                "status": "Succeeded",
                "attempts": 1,
                "maxAttempts": 3,
                "parameters": {"message": "refund C-7"},
                "outputs": {"echo": "refund C-7"},
                "error": None,
                "nextAttemptAt": None,
                "childExecutionId": None,
                "startTime": "2026-01-15T10:00:00.300000Z",
                "endTime": "2026-01-15T10:00:00.310000Z",
            },
            {
                "nodeId": "reserve",
                "position": 2,
                "actionType": "core.echo",
                "status": "Succeeded",
                "attempts": 1,
                "maxAttempts": 3,
                "parameters": {"message": "release R-1"},
                "outputs": {"echo": "release R-1"},
                "error": None,
                "nextAttemptAt": None,
                "childExecutionId": None,
                "startTime": "2026-01-15T10:00:00.320000Z",
                "endTime": "2026-01-15T10:00:00.330000Z",
            },
        ],
    },
}

EXECUTION_LIST: dict[str, Any] = {
    "items": [
        {
            "id": EXECUTION_ID,
            "workflowId": "simple-echo",
            "workflowVersion": 1,
            "requestId": "order-1042",
            "status": "Succeeded",
            "principalId": "alice",
            "createdAt": "2026-01-15T10:00:00.100000Z",
            "startTime": "2026-01-15T10:00:00.180000Z",
            "endTime": "2026-01-15T10:00:00.260000Z",
            "cancelRequestedAt": None,
            "suspendedAt": None,
            "triggerId": None,
            "parentExecutionId": None,
            "triggerKind": "manual",
            "priority": 0,
            "compensationStatus": None,
        }
    ],
    "nextCursor": "WyIyMDI2LTAxLTE1VDEwOjAwOjAwLjEwMDAwMFoiXQ",
}


def _example(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


# operationId -> {"request": {name: example}, "responses": {status: {name: example}}}
OPERATION_EXAMPLES: dict[str, dict[str, Any]] = {
    "createWorkflow": {
        "request": {
            "listOrder": _example("Two echo nodes without edges: they run in list order", SIMPLE_ECHO),
            "graph": _example("A graph: a transform, a conditional approval, an HTTP call with retries", ORDER_GRAPH),
        },
        "responses": {"201": {"created": _example("The new Draft workflow", WORKFLOW_READ)}},
    },
    "updateWorkflow": {
        "request": {"newVersion": _example("A new draft version of simple-echo", SIMPLE_ECHO)},
    },
    "executeWorkflow": {
        "request": {
            "withRequestId": _example(
                "Idempotent start: the same requestId again returns the same execution",
                {"trigger": {"userId": "test-user-123", "source": "manual"}, "requestId": "order-1042"},
            ),
            "triggerOnly": _example("A trigger payload only", {"trigger": {"userId": "test-user-123"}}),
        },
        "responses": {"202": {"started": _example("The execution is queued", EXECUTE_RESPONSE)}},
    },
    "deleteWorkflow": {
        "responses": {
            "409": {
                "hasExecutions": _example(
                    "A workflow with runs is not deleted: they are its audit log",
                    {
                        "type": "https://dataworkflows.dev/problems/workflow_has_executions",
                        "title": "Conflict",
                        "status": 409,
                        "detail": "workflow simple-echo has 3 execution(s), and a workflow is deleted only without any:"
                        " they are its audit log. Remove them first: they go with retention once they have ended,"
                        " or now with `dataworkflows prune --workflow simple-echo --older-than 1h` (those that ended"
                        ' over an hour ago; a workflow\'s own retention still applies: README "Retention"); cancel'
                        " those still running",
                        "code": "workflow_has_executions",
                        "instance": "/api/v1/workflows/simple-echo",
                        "executionCount": 3,
                    },
                )
            }
        },
    },
    "getExecution": {
        "responses": {
            "200": {
                "succeeded": _example("A run that succeeded", EXECUTION_READ),
                "compensated": _example("A run that failed, its earlier nodes undone", EXECUTION_COMPENSATED),
            }
        },
    },
    "listExecutions": {
        "responses": {"200": {"page": _example("One page, newest first", EXECUTION_LIST)}},
    },
}

# Problem details (RFC 9457) by status, shown on every operation that may answer them.
PROBLEM_EXAMPLES: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "A query value of the wrong type",
        {
            "type": "https://dataworkflows.dev/problems/bad_request",
            "title": "Bad request",
            "status": 400,
            "detail": "query parameter limit='abc': Expected `int`, got `str`",
            "code": "bad_request",
            "instance": "/api/v1/executions",
            "errors": [{"pointer": "/limit", "parameter": "limit", "detail": "Expected `int`, got `str`"}],
        },
    ),
    404: (
        "An unknown workflow",
        {
            "type": "https://dataworkflows.dev/problems/workflow_not_found",
            "title": "Not found",
            "status": 404,
            "detail": "workflow 'nope' not found",
            "code": "workflow_not_found",
            "instance": "/api/v1/workflows/nope",
        },
    ),
    409: (
        "Executing a workflow that is not Active",
        {
            "type": "https://dataworkflows.dev/problems/workflow_not_runnable",
            "title": "Conflict",
            "status": 409,
            "detail": "workflow simple-echo is a Draft; publish it before executing it",
            "code": "workflow_not_runnable",
            "instance": "/api/v1/workflows/simple-echo/execute",
        },
    ),
    422: (
        "An invalid definition: one entry per problem, each with a JSON pointer",
        {
            "type": "https://dataworkflows.dev/problems/invalid_definition",
            "title": "Invalid workflow definition",
            "status": 422,
            "detail": "the workflow definition has 2 problem(s)",
            "code": "invalid_definition",
            "instance": "/api/v1/workflows",
            "errors": [
                {
                    "pointer": "/nodes/0/edges/0/targetNode",
                    "code": "unknown_node",
                    "detail": "edge target 'nope' is not a node id",
                },
                {
                    "pointer": "/nodes/1/timeout",
                    "code": "duration",
                    "detail": "'5 minutes' is not an ISO 8601 duration such as PT30S, PT5M or PT1H",
                },
            ],
        },
    ),
    503: (
        "The database does not answer",
        {
            "type": "https://dataworkflows.dev/problems/database_unavailable",
            "title": "Database unavailable",
            "status": 503,
            "detail": "the database is unavailable",
            "code": "database_unavailable",
            "instance": "/api/v1/workflows",
        },
    ),
}
