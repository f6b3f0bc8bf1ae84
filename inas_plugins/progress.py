"""How progress is shown, one rule for the command line and the library: bars where they redraw in
place (a terminal, a Jupyter notebook), one line per step anywhere else (a log file, a batch job).

A bar written to a log keeps every redraw, hundreds of partial lines per epoch; so off a terminal the
bars are off and the caller writes one summary line per round or step instead.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO


def draw_bars(wanted: bool = True, stream: Optional[TextIO] = None) -> bool:
    """Whether progress bars should be drawn: they are ``wanted`` and ``stream`` (stderr, where they
    go) is a terminal or the output of a Jupyter kernel."""
    if not wanted:
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) or _in_notebook()


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, where tqdm draws widgets that update in place."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
