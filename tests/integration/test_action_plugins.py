"""Actions from installed packages (the `dataworkflows.actions` entry-point group): one that cannot be
loaded stops `worker`, `api` and `examples load` at once, naming it, exit 2. A review (installed
from the wheel, a plugin whose own dependency was missing): the worker and the API had opened their
pool when they loaded it, the error left that pool open, and they hung for good (the API ignored
SIGTERM too, after "Application startup failed. Exiting."); `examples load` printed a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataworkflows.cli import EXIT_USAGE
from tests.fakes import free_port


def plugin(root: Path, name: str, entry_points: str, module: str) -> Path:
    """A distribution `name` on `root`: its dataworkflows.actions entry points and its one module."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[dataworkflows.actions]\n{entry_points}")
    (root / f"{name}.py").write_text(module)
    return root


def broken_plugin(root: Path) -> Path:
    """A distribution on `root` whose entry point names a module that imports what is not there."""
    return plugin(root, "brokenplugin", "greet = brokenplugin:GreetAction\n", "import no_such_module_of_the_plugin\n")


@pytest.mark.parametrize("argv", [["worker"], ["api", "--port", "0"], ["examples", "load"]])
def test_an_action_package_that_cannot_be_loaded_stops_the_command_naming_it(
    dsn: str, tmp_path: Path, argv: list[str]
) -> None:
    argv = [str(free_port()) if part == "0" else part for part in argv]
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "PYTHONPATH": str(broken_plugin(tmp_path / "site")),
        "DW_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataworkflows", *argv],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"`dataworkflows {' '.join(argv)}` still ran after 45 s:\n{err.decode(errors='replace')}")
    text = err.decode(errors="replace")
    assert proc.returncode == EXIT_USAGE, text
    assert "Traceback" not in text, text
    assert "greet (brokenplugin:GreetAction)" in text and "no_such_module_of_the_plugin" in text, text


def test_an_entry_point_that_is_not_an_action_is_said_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: a package whose entry point loads but is no action (no type_name) stopped `worker` and
    `api` with ActionRegistry.register's traceback, exit 1, not the line naming the entry point."""
    from dataworkflows.actions import default_registry
    from dataworkflows.errors import ConfigurationError

    monkeypatch.syspath_prepend(
        str(plugin(tmp_path / "site", "oddplugin", "odd = oddplugin:Odd\n", "class Odd:\n    pass\n"))
    )
    with pytest.raises(ConfigurationError, match=r"odd \(oddplugin:Odd\) .* cannot be loaded: .*not an action"):
        default_registry()


def test_an_installed_action_may_not_replace_another_of_its_type_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a package's action named core.http.request silently replaced the built-in one (its
    destination checks and secret scrubbing with it); two packages' actions of one name, the first."""
    from dataworkflows.actions import default_registry
    from dataworkflows.errors import ConfigurationError

    monkeypatch.syspath_prepend(
        str(
            plugin(
                tmp_path / "site",
                "shadowplugin",
                "shadow = shadowplugin:Shadow\n",
                "class Shadow:\n    type_name = 'core.echo'\n",
            )
        )
    )
    with pytest.raises(ConfigurationError, match=r"two actions are named 'core.echo' \(built in, and shadowplugin"):
        default_registry()


def test_one_action_under_two_entry_point_names_is_one_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: a package that declares its action under a second entry-point name (an old name kept
    while it is renamed) was refused as "two actions" naming the same class twice, and told to
    uninstall "one of them": it is one action, registered once."""
    from dataworkflows.actions import default_registry

    monkeypatch.syspath_prepend(
        str(
            plugin(
                tmp_path / "site",
                "aliasplugin",
                "mine = aliasplugin:Mine\nold = aliasplugin:Mine\n",
                "class Mine:\n    type_name = 'acme.mine'\n",
            )
        )
    )
    assert type(default_registry().get("acme.mine")).__name__ == "Mine"
