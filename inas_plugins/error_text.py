"""An error as one line of text: what every one-line error of the library and the CLI quotes.

Standard library only, so the CLI may call it before it imports torch.
"""

from __future__ import annotations

from typing import Optional


def first_line(error: object, *, limit: Optional[int] = None) -> str:
    """The first non-blank line of ``str(error)``, cut to ``limit`` characters when given.

    Messages put their summary first and details (a server's body, a traceback) after it. An
    exception without text gives its type's name; anything else without text gives ``""``.
    """
    line = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    if not line:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return line[:limit] if limit is not None else line
