"""The CLI's commands run in the test's process against a real API process: the same code as the
`dataworkflows` program without a Python start-up a call (a quarter to half a second each, which
the acceptance suite cannot afford by the dozen). Tests that need the program itself (exit status,
a closed pipe, start-up) run it as a process."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from dataworkflows.cli import main
from tests.acceptance.conftest import Stack


def in_process(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """cli(*args, principal=None): runs `dataworkflows ARGS` with DW_API_URL at the stack."""
    monkeypatch.setenv("DW_API_URL", stack.url)

    def cli(*args: str, principal: str | None = None) -> subprocess.CompletedProcess[str]:
        if principal:
            monkeypatch.setenv("DW_PRINCIPAL_ID", principal)
        else:
            monkeypatch.delenv("DW_PRINCIPAL_ID", raising=False)
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: a usage error, --help
            code = exc.code if isinstance(exc.code, int) else 2
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return cli
