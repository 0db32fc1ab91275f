"""The ``slimkit`` command: the typer app, the terminal, and one-line errors.

The library logs and never prints; this shell owns the terminal: progress bars, tables, colours.
Exit codes: 0 done; 1 an error in what was given (a usage error such as an unknown option or a
missing argument too), as one ``error:`` line (``--debug`` shows the traceback); 2 an internal
error (a bug); 130 interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import signal
import sys

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from slimkit.cli.plain import ProgressConsole
from slimkit.errors import SlimkitError
from slimkit.logs import route_library_logs
from slimkit.threads import prefer_passive_waiting

# piped output (CI logs, files) gets wide tables instead of rich's 80-column default, and its
# spinners print a line per message (slimkit.cli.plain)
console = ProgressConsole(width=None if sys.stdout.isatty() else 160)
error_console = Console(stderr=True)

app = typer.Typer(
    name="slimkit",
    help="Make PyTorch models smaller, faster and better, measured on real runtimes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from slimkit import __version__

        console.print(f"slimkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show informational logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """slimkit: train, compress, export, run and measure models on real deployment runtimes."""
    _state["debug"] = debug
    # slimkit's records from WARNING (--verbose: INFO); other libraries' only with --debug
    handler = RichHandler(console=error_console, show_path=False)
    route_library_logs(handler, debug=debug, verbose=verbose)
    # torch.onnx logs a warning per missing torchvision operator; it is noise for slimkit users.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torchao").setLevel(logging.ERROR)  # warns about CUDA kernels on CPU


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def one_line(error: BaseException) -> str:
    """An error as one line of plain text: terminal colour codes and extra lines dropped."""
    text = _ANSI.sub("", str(error)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def quiet_exit_on_interrupt() -> None:
    """From here on a Ctrl-C does nothing: the work is done or given up, and what runs next
    (writing the last line, libraries' exit hooks) must not end in a KeyboardInterrupt traceback."""
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``slimkit`` console script."""
    args = sys.argv[1:] if argv is None else argv
    prefer_passive_waiting()  # before a command imports torch; child processes inherit it
    debug = "--debug" in args
    atexit.register(quiet_exit_on_interrupt)  # runs before the hooks libraries registered earlier
    try:
        # not standalone: click's usage errors come here and follow the exit-code rule below
        code = app(args=args, prog_name="slimkit", standalone_mode=False)
    except _CLICK_ERROR as error:  # an unknown option, a missing argument, a bad value
        if type(error).__name__ == "NoArgsIsHelpError":  # `slimkit` (or a group) alone: help
            return
        error_console.print(
            f"[bold red]error:[/] {escape(usage_line(error))}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
    except typer.Abort:  # end of input where a value was expected
        error_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except (SlimkitError, OSError) as error:
        if debug:
            raise
        error_console.print(
            f"[bold red]error:[/] {escape(one_line(error))}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
    except KeyboardInterrupt:
        quiet_exit_on_interrupt()
        error_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as error:  # a bug: say so in one line, the traceback is one flag away
        if debug:
            raise
        error_console.print(
            f"[bold red]internal error:[/] {type(error).__name__}: {escape(one_line(error))} "
            "(run again with --debug for the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    if isinstance(code, int) and code:  # typer.Exit(code) from a command
        sys.exit(code)


# click's error base class (typer >= 0.2x carries its own copy of click; earlier ones use click)
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def usage_line(error: Exception) -> str:
    """A usage error as one line that points at the command's ``--help``."""
    message = getattr(error, "format_message", error.__str__)()
    text = " ".join(_ANSI.sub("", message).split())
    context = getattr(error, "ctx", None)
    return f"{text} (see '{context.command_path} --help')" if context is not None else text
