"""The `dataworkflows` command's entry point.

Ctrl-C while the command is still importing its modules or reading its arguments (its first tenth
of a second or so) ended in a KeyboardInterrupt traceback with exit code 1 (a review); the command
ends quietly with 130 then, as it does once it runs (dataworkflows.cli.main)."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from dataworkflows.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
