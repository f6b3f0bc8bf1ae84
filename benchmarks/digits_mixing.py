"""The quick preset on digits with lowdata's MixUp and without it: AUC, final accuracy, seconds per run.

The quick preset's labelled sets (50-600 images) are all below lowdata's ``mixing_max_labels``, so
every round mixes; this measures what that does on the offline default data. Each run is a whole
``inas run --dataset digits --preset quick --seed S`` process (iNAS + softmax response), against the same
with ``--mixup 0``, one after the other with the order alternating, so both see the same machine.

    python benchmarks/digits_mixing.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import command_line, machine_line, markdown_table, write_section  # noqa: E402

VARIANTS = {"lowdata (MixUp)": [], "lowdata, --mixup 0": ["--mixup", "0"]}


def run(seed: int, extra: list[str], out: Path) -> dict:
    """One whole run; its AUC and final accuracy from its results.json, its wall time from here."""
    from inas_plugins.report import normalised_auc

    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "inas_cli.main", "run", "--dataset", "digits", "--preset", "quick",
                    "--seed", str(seed), "--quiet", "--out", str(out), *extra], check=True, capture_output=True)
    seconds = time.perf_counter() - began
    rounds = json.loads((out / "results.json").read_text())["rounds"]
    accuracy = [r["test_accuracy"] for r in rounds]
    return {"auc": normalised_auc([r["labelled"] for r in rounds], accuracy), "final": accuracy[-1],
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    results: dict[str, dict[int, dict]] = {name: {} for name in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        for index, seed in enumerate(args.seeds):
            order = list(VARIANTS) if index % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                results[name][seed] = run(seed, VARIANTS[name], Path(scratch) / f"seed{seed}-variant{list(VARIANTS).index(name)}")
                print(f"seed {seed} {name}: {results[name][seed]}", flush=True)
    rows = []
    for name, by_seed in results.items():
        aucs = [by_seed[s]["auc"] for s in args.seeds]
        rows.append([name, f"{statistics.fmean(aucs):.3f} ± {statistics.stdev(aucs):.3f}" if len(aucs) > 1
                     else f"{aucs[0]:.3f}", " / ".join(f"{a:.3f}" for a in aucs),
                     f"{statistics.fmean(by_seed[s]['final'] for s in args.seeds):.3f}",
                     f"{statistics.fmean(by_seed[s]['seconds'] for s in args.seeds):.1f}"])
    body = "\n".join([
        "## The quick preset on digits: lowdata with and without MixUp", "",
        f"Command: `{command_line()}` on {machine_line()}. Script: `benchmarks/digits_mixing.py` (its docstring "
        "says how the runs alternate).", "",
        markdown_table(["recipe", "AUC, mean ± std", f"AUC per seed ({', '.join(map(str, args.seeds))})",
                        "final accuracy (600 labels)", "seconds per run"], rows)])
    print(body)
    write_section("digits_mixing", body)


if __name__ == "__main__":
    main()
