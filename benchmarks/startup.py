"""Start-up time of the light ``inas`` commands, next to ``python -c "import typer"`` (their floor).

``inas --help``, ``inas space`` and ``inas heuristics --help`` import neither torch nor timm (the
package registers its networks with timm only once timm is imported; tests/test_photos_and_identity.py
checks the imports). Each command runs ``--repeat`` times in a fresh process; the table gives the
median and the fastest wall time, and for scale ``import torch, timm``, which the light commands
used to pay. Wall times on a shared machine vary: compare rows of one table, not across tables.

    python benchmarks/startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine_line, markdown_table, write_section  # noqa: E402


def inas_command() -> list[str]:
    script = shutil.which("inas")
    return [script] if script else [sys.executable, "-m", "inas_cli.main"]


def commands() -> list[tuple[str, list[str]]]:
    inas = inas_command()
    return [
        ('python -c "import typer"', [sys.executable, "-c", "import typer"]),
        ("inas --help", [*inas, "--help"]),
        ("inas space --json", [*inas, "space", "--json"]),
        ("inas space --max-blocks 12 --max-stacks 5", [*inas, "space", "--max-blocks", "12", "--max-stacks", "5"]),
        ("inas heuristics --help", [*inas, "heuristics", "--help"]),
        ("inas run --help", [*inas, "run", "--help"]),
        ('python -c "import torch, timm" (for scale)', [sys.executable, "-c", "import torch, timm"]),
    ]


def time_once(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="Do not update BENCHMARKS.md.")
    args = parser.parse_args()
    rows = []
    for label, command in commands():
        time_once(command)  # warm the file cache
        times = [time_once(command) for _ in range(args.repeat)]
        rows.append([label, f"{statistics.median(times):.2f}", f"{min(times):.2f}"])
        print(rows[-1], flush=True)
    table = markdown_table(["command", "median wall s", "fastest wall s"], rows)
    body = "\n\n".join([
        "## Start-up of the light commands",
        f"`{command_line()}` on {machine_line()}; {args.repeat} runs each in a fresh process after one "
        "warm-up run. The light commands import neither torch nor timm, so they cost about what "
        "importing Typer costs; `import torch, timm` is what every command paid before.",
        table,
    ])
    print(table)
    if not args.no_write:
        write_section("startup", body)


if __name__ == "__main__":
    main()
