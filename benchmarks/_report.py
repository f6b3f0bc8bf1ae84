"""Shared by the benchmark scripts: print a table and write it into its own section of BENCHMARKS.md.

Each script owns one section, delimited by ``<!-- name:start -->`` / ``<!-- name:end -->`` markers,
so scripts can be re-run independently without clobbering each other's numbers.
"""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path

import torch

from inas_plugins.atomic import atomic_write_text

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line() -> str:
    return (f"{platform.machine()}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
            f"torch {torch.__version__}, device {'cuda' if torch.cuda.is_available() else 'cpu'}")


def command_line() -> str:
    return "python " + " ".join(shlex.quote(arg) for arg in sys.argv)


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md with ``body``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)
