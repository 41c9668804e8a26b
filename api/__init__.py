"""The HTTP API (Litestar). Validates input, calls stored procedures, reads results; it never
executes actions."""
