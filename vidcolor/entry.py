"""The console entry point: signal handlers first, then the (heavier) command line.

Installed before click and the commands are imported, so even a Ctrl-C in the first tenth of a
second ends with one line and the shell's status, not a traceback from inside an import.
"""

from __future__ import annotations

import sys

from vidcolor.signals import Interrupted, install_interrupt_handlers


def main() -> None:
    install_interrupt_handlers()
    try:
        from vidcolor.cli import main as cli_main
    except Interrupted as exc:
        sys.stderr.write(f"vidcolor: error: interrupted by {exc.name}\n")
        sys.exit(exc.exit_status)
    cli_main()
