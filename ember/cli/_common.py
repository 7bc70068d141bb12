"""What every `ember` command shares: the `app`, its one-line errors and the options several commands take.

A failure prints one line, `error: ...`, on stderr and exits with 1 (2 for a wrong option); `ember --debug
COMMAND ...` shows the traceback instead.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

__all__ = ["Bs", "ModelPath", "OutDir", "app", "print_error"]


class _OneLineErrors(TyperGroup):
    """Prints every error as one line on stderr: a wrong option exits with 2, a failure with 1."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as e:  # click's usage errors: unknown option, bad value, ...
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            print_error(e.format_message() + hint)
            code = e.exit_code
        except typer.Abort:
            print_error("aborted")
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            with warnings.catch_warnings():  # restores the usual display afterwards (tests run in-process)
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            print_error(_one_line(e))
            raise typer.Exit(1) from None


def print_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)  # not the file and source line


def _one_line(e: Exception) -> str:
    """The error's message and notes on one line, with a command-line hint for the errors that have one.
    Errors ember raises on purpose are ValueErrors (DataError, NotAnExportError, ...), OSErrors
    (FileNotFoundError, ...) or ImportErrors; anything else is a bug and says how to see its traceback."""
    text = " ".join([_message(e), *getattr(e, "__notes__", [])])
    text = " ".join(f"{text} {_hint(e)}".split())
    if isinstance(e, ValueError | OSError | ImportError):
        return text
    return f"{type(e).__name__}: {text} (run 'ember --debug ...' for the traceback)"


def _message(e: Exception) -> str:
    from ember.models import WeightsNotFoundError

    if isinstance(e, WeightsNotFoundError):  # keep what is missing and where ember looked; the remedies
        return str(e).split("Either:")[0]  # that follow are the Python API's, _hint gives the options'
    return str(e)


def _hint(e: Exception) -> str:
    from ember.models import UnknownModelError, WeightsNotFoundError, list_models

    if isinstance(e, WeightsNotFoundError):
        return "On the command line: --weights FILE, or --no-pretrained to train from random weights."
    if isinstance(e, UnknownModelError):
        return f"The architectures: {', '.join(list_models())}."
    return ""


app = typer.Typer(
    name="ember",
    cls=_OneLineErrors,
    help="ember: the fast.ai course's deep learning on plain PyTorch, from the command line.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        import ember

        typer.echo(f"ember {ember.__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


# ---- options shared by several commands -----------------------------------------------------------
Bs = Annotated[int, typer.Option(min=1, metavar="N", help="Batch size.")]
OutDir = Annotated[Path, typer.Option(metavar="DIR", help="Folder for what the command writes.")]
ModelPath = Annotated[
    Path, typer.Argument(metavar="MODEL", help="An export file from 'ember train' or learn.export().")
]
