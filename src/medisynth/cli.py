"""The ``medisynth`` command line: a thin typer layer over the Python API.

Each sub-command parses its options, calls the API and prints the result. Errors the user can
fix (:class:`~medisynth.errors.MedisynthError`) are printed as one message with exit status 2;
anything unexpected is printed as an internal error (status 3) unless ``--debug`` is given.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from medisynth.errors import MedisynthError

app = typer.Typer(
    name="medisynth",
    help="Train, apply and validate GANs on medical images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


@app.callback()
def _main_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more detail."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s"
    )


# --------------------------------------------------------------------------- info
@app.command()
def info(
    path: Path = typer.Argument(..., help="A file or folder: NIfTI, DICOM, PNG/TIFF/JPEG, npz."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    series: str | None = typer.Option(
        None, "--series", help="Series Instance UID, for a folder holding several DICOM series."
    ),
) -> None:
    """Describe an image, volume, DICOM series, MedMNIST file or image folder."""
    from medisynth.data.describe import describe

    description = describe(path, series_uid=series)
    typer.echo(description.to_json() if as_json else description.to_text())


# --------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of raising on user errors."""
    try:
        app(args=argv, standalone_mode=False)
    except MedisynthError as err:
        if _state["debug"]:
            raise
        typer.echo(f"error: {err}", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except typer.Exit as done:
        return int(done.exit_code or 0)
    except SystemExit as done:
        return int(done.code or 0) if isinstance(done.code, int) else 1
    except Exception as err:  # noqa: BLE001 - the last guard before a bare traceback
        import click

        if isinstance(err, click.ClickException):
            err.show()
            return err.exit_code
        if _state["debug"]:
            raise
        typer.echo(
            f"internal error: {type(err).__name__}: {err}\n"
            "This is a bug in medisynth; run again with --debug for the traceback and report it.",
            err=True,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
