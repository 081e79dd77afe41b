"""The CLI's consoles and tables, made when first used.

Importing rich (with pygments and its markup) is a fair share of a command's start-up, and
``rhizome worker`` prints nothing through it: the CLI modules make their consoles with
:func:`console` and their tables with :func:`Table`, which import rich only when a command
prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable


class LazyConsole:
    """A :class:`rich.console.Console` made at its first use, with these arguments."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Console | None = None

    @property
    def real(self) -> Console:
        """The console itself (made now if it was not yet)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def console(**kwargs: Any) -> LazyConsole:
    return LazyConsole(**kwargs)


def Table(*args: Any, **kwargs: Any) -> RichTable:
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)
