"""What the command modules share: the user-facing error, reading files, progress bars."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    import argparse

    from shared.face.identity import IdentityService
    from shared.settings import Settings


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


class Handler(Protocol):
    def __call__(self, args: argparse.Namespace, settings: Settings) -> None: ...


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, or a CliError that names it."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None


def identity(settings: Settings) -> IdentityService:
    from shared.face.factory import build_identity

    return build_identity(settings)


class Bar(Protocol):
    def __call__(self, done: int, text: str = "", total: int | None = None) -> None: ...


@contextmanager
def progress_bar(total: int | None = None) -> Iterator[Bar]:
    """A progress bar on stdout; ``bar(done, text, total)`` moves it. Rich redraws it in a
    terminal and prints its last state once when stdout is a file or a pipe."""
    console = Console(file=sys.stdout)
    columns = (
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=total)

        def update(done: int, text: str = "", total: int | None = None) -> None:
            if total is not None:
                progress.update(task, total=total)
            progress.update(task, completed=done, description=text)

        yield update
