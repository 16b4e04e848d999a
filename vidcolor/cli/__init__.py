"""``vidcolor``: a click group whose default command colourises.

``vidcolor film.mp4 -o color.mp4`` runs ``vidcolor colorize film.mp4 -o color.mp4``; the other
commands (``train``, ``eval``, ...) are named first. Problems a user can fix leave as one line
on stderr and exit status 1; a signal ends the run cleanly with status 128 + N.
Heavy libraries (torch) are imported by the commands themselves, so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any, NoReturn

import click

from vidcolor import __version__
from vidcolor.cli.batch import batch_command
from vidcolor.cli.colorize import colorize_command
from vidcolor.cli.deflicker import deflicker_command
from vidcolor.cli.engine import engine_command
from vidcolor.cli.eval_video import eval_video_command
from vidcolor.cli.train import eval_command, train_command
from vidcolor.errors import VidcolorError, one_line
from vidcolor.signals import Interrupted, install_interrupt_handlers

DEFAULT_COMMAND = "colorize"
_GROUP_OPTIONS = {"-h", "--help", "--version"}


class DefaultGroup(click.Group):
    """A group that runs its default command when the first argument names no command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in _GROUP_OPTIONS:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("vidcolor", "INPUT... -o OUTPUT [OPTIONS]")
        formatter.write_usage("vidcolor", "COMMAND [ARGS]...", prefix="       ")


@click.group(
    cls=DefaultGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=False,
)
@click.version_option(__version__, prog_name="vidcolor")
def cli() -> None:
    """Colourise black-and-white films, photos and folders of scans.

    Without a command, vidcolor colourises: `vidcolor film.mp4 -o color.mp4` is
    `vidcolor colorize film.mp4 -o color.mp4` (see `vidcolor colorize --help`).
    """


cli.add_command(colorize_command)
cli.add_command(batch_command)
cli.add_command(train_command)
cli.add_command(eval_command)
cli.add_command(deflicker_command)
cli.add_command(eval_video_command)
cli.add_command(engine_command)


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record))


def _setup_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLineFormatter("vidcolor: warning: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def fail(message: str, status: int = 1) -> NoReturn:
    click.echo(f"vidcolor: error: {one_line(message)}", err=True)
    sys.exit(status)


def main(args: list[str] | None = None) -> Any:
    """Console entry point: one line and a status for every way a run can end badly."""
    install_interrupt_handlers()
    _setup_logging()
    try:
        result = cli.main(args=args, prog_name="vidcolor", standalone_mode=False)
    except VidcolorError as exc:
        fail(str(exc))
    except Interrupted as exc:
        argv = sys.argv[1:] if args is None else args
        kept = {
            "train": "; checkpoints written so far are kept (--resume goes on from the last)",
            "eval": "",
            "eval-video": "",
            "batch": "; finished files are kept: the same command goes on from there",
        }.get(argv[0] if argv else "", "; no partial output was kept")
        # Cleanup is done: leave now, without the interpreter's shutdown, during which a
        # further Ctrl-C would meet the default handler and kill the process by signal.
        click.echo(f"vidcolor: error: interrupted by {exc.name}{kept}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.exit_status)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.UsageError as exc:  # click's own form is three lines: usage, hint, error
        where = exc.ctx.command_path if exc.ctx is not None else "vidcolor"
        fail(f"{exc.format_message()} (see {where} -h)", exc.exit_code)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("VIDCOLOR_DEBUG"):
            traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {exc} (set VIDCOLOR_DEBUG=1 for details)")
    sys.exit(result if isinstance(result, int) else 0)
