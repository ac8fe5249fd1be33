"""The one error wrapper of zoo's command-line tools (``python -m zoo.deploy``, ``python -m zoo.tools.*``)."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["run_cli"]


def run_cli(main: Callable[[], Any]) -> None:
    """Call ``main()``; bad input (``ValueError``, ``FileNotFoundError``) exits with status 1 and a
    one-line ``error: ...`` message instead of a traceback."""
    try:
        main()
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
