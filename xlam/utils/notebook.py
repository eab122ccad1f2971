"""Display helpers for notebooks (IPython is needed only when they are called)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any


def html_frame(page: str | Path, height: int = 420) -> Any:
    """A self-contained HTML page (e.g. ``xlam-data inspect --html``) shown in a notebook.

    The page goes into an ``<iframe srcdoc>``, so its stylesheet (``body``, ``pre``,
    ``table`` rules) styles the page only, not the notebook around it.

    Args:
        page: The HTML text, or a :class:`~pathlib.Path` to an ``.html`` file.
        height: Frame height in pixels (the frame scrolls).

    Returns:
        An ``IPython.display.HTML`` object; the last expression of a cell displays it.
    """
    from IPython.display import HTML

    if isinstance(page, Path):
        page = page.read_text(encoding="utf-8")
    # the <div> keeps IPython from steering an iframe to IFrame(), which needs a URL
    return HTML(
        f'<div><iframe srcdoc="{html.escape(page, quote=True)}" '
        f'style="width:100%;height:{int(height)}px;border:1px solid #ddd"></iframe></div>'
    )
