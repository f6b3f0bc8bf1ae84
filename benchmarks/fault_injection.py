"""Kill ``inas run`` at many moments and check that every run ends identical to an uninterrupted one.

One uninterrupted reference run first; then, per trial, a fresh run killed once, and continued with
``inas run --resume DIR`` (or, when the kill came before config.json existed, started again with
the same command) until it exits 0. Each trial's directory is then compared with the reference:

* the same files, and no other (no temporary file, no lock file left);
* config.json and results.json equal (results.json without its wall-clock ``*seconds`` fields),
  results.csv equal without its timing columns;
* the checkpoint's labelled map, architecture and every weight bit-identical.

Kinds of kill, taken in turn:

* ``write-before`` / ``write-after``: SIGKILL just before / just after the k-th file replacement
  (``os.replace`` of :mod:`inas_plugins.atomic`, k drawn over all of the run's writes), i.e. inside
  each file-write window: with the temporary file complete but not yet renamed, and with the new
  file in place but the next one not yet written;
* ``sigkill``: SIGKILL at a random instant of the run (start-up and imports included; a run that
  ends before the signal -- runs vary in speed on a shared machine -- is started again and
  signalled at half the delay);
* ``sigint``: Ctrl-C the same way.

The write kills are injected by running the CLI through a small wrapper that counts ``os.replace``
calls in the child process; nothing of the product is changed.

    python benchmarks/fault_injection.py --kills 10                       # ~10 min on 2 loaded cores
    python benchmarks/fault_injection.py --kills 100 --every-write --seed 1  # the larger run
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from inas_plugins.run_files import CHECKPOINT_NAME, CONFIG_NAME, RESULTS_CSV, RESULTS_JSON, RUN_FILES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine_line, markdown_table, write_section  # noqa: E402

KINDS = ("write-before", "write-after", "sigkill", "sigint")

# Runs the CLI, SIGKILLing itself around the FI_AT-th os.replace (FI_WHEN = before/after); with
# FI_AT=0 it only counts and reports the number of replacements on stderr at exit.
WRAPPER = r"""
import atexit, os, signal, sys
at, when = int(os.environ.get("FI_AT", "0")), os.environ.get("FI_WHEN", "before")
real_replace, calls = os.replace, [0]
def replace(src, dst, *args, **kwargs):
    calls[0] += 1
    if calls[0] == at and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *args, **kwargs)
    if calls[0] == at and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
atexit.register(lambda: sys.stderr.write(f"FI_REPLACE_COUNT {calls[0]}\n"))
from inas_cli.main import app
app(sys.argv[1:], prog_name="inas")
"""


def inas(args: list[str], env: dict, **popen) -> subprocess.Popen:
    # SIGINT back to its default in the child: a shell starts background jobs (nohup ... &) with it
    # ignored, and Python then installs no KeyboardInterrupt handler, so Ctrl-C would do nothing.
    return subprocess.Popen([sys.executable, "-c", WRAPPER, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


def finish(run_args: list[str], run_dir: Path, env: dict, log: list[str]) -> int:
    """Continue (or restart) the run until it completes; returns how many commands that took."""
    for attempt in range(1, 6):
        if (run_dir / CONFIG_NAME).exists():
            args = ["run", "--resume", str(run_dir), "--quiet"]
        else:
            args = [*run_args, "--out", str(run_dir)]
        process = inas(args, env)
        out, err = process.communicate()
        log.append(f"$ inas {' '.join(args)} -> {process.returncode}")
        if process.returncode == 0:
            return attempt
        if "Traceback" in err or process.returncode != 2:
            raise RuntimeError(f"recovery failed ({process.returncode}):\n{out}\n{err}")
    raise RuntimeError(f"{run_dir} did not complete after 5 commands")


def comparable_results(run_dir: Path) -> dict:
    data = json.loads((run_dir / RESULTS_JSON).read_text())
    for row in data["rounds"]:
        for key in [k for k in row if k.endswith("seconds")]:
            del row[key]
        for candidate in row.get("candidates", []):
            candidate.pop("seconds", None)
    return data


def comparable_csv(run_dir: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO((run_dir / RESULTS_CSV).read_text())))
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]


def differences(run_dir: Path, reference: Path) -> list[str]:
    found = []
    names = {p.name for p in run_dir.iterdir()}
    if names != RUN_FILES:
        found.append(f"files {sorted(names ^ RUN_FILES)}")
    if json.loads((run_dir / CONFIG_NAME).read_text()) != json.loads((reference / CONFIG_NAME).read_text()):
        found.append(CONFIG_NAME)
    if comparable_results(run_dir) != comparable_results(reference):
        found.append(RESULTS_JSON)
    if comparable_csv(run_dir) != comparable_csv(reference):
        found.append(RESULTS_CSV)
    mine, theirs = (torch.load(d / CHECKPOINT_NAME, weights_only=True) for d in (run_dir, reference))
    if not torch.equal(mine["labelled_map"], theirs["labelled_map"]):
        found.append("labelled set")
    if mine["arch"] != theirs["arch"] or mine["finished"] is not True:
        found.append("architecture/finished")
    if mine["model_state"].keys() != theirs["model_state"].keys() or not all(
            torch.equal(mine["model_state"][k], theirs["model_state"][k]) for k in theirs["model_state"]):
        found.append("weights")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="Trials, each killed once, the kinds taken in turn.")
    parser.add_argument("--every-write", action="store_true",
                        help="Also one trial killed before and one after each of the run's file replacements.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the kill moments.")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--epoch-size", type=int, default=256)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--heuristic", default="mc_dropout")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the run directories here.")
    parser.add_argument("--no-write", action="store_true", help="Do not update BENCHMARKS.md.")
    args = parser.parse_args()

    run_args = ["run", "--dataset", args.dataset, "--preset", "quick", "--epochs", str(args.epochs),
                "--epoch-size", str(args.epoch_size), "--budget", str(args.budget), "--heuristic", args.heuristic,
                "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="inas-faults-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)

    reference = root / "reference"
    started = time.perf_counter()
    process = inas([*run_args, "--out", str(reference)], env)
    out, err = process.communicate()
    duration = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{out}\n{err}")
    writes = int([line for line in err.splitlines() if line.startswith("FI_REPLACE_COUNT")][-1].split()[1])
    print(f"reference: {duration:.1f} s, {writes} file replacements", flush=True)

    plan = [(KINDS[trial % len(KINDS)], None) for trial in range(args.kills)]
    if args.every_write:
        plan += [(f"write-{when}", at) for at in range(1, writes + 1) for when in ("before", "after")]
    rows, outcomes = [], {kind: [0, 0] for kind in KINDS}
    for trial, (kind, at) in enumerate(plan):
        run_dir = root / f"trial{trial:03d}"
        log: list[str] = []
        trial_env = dict(env)
        if kind.startswith("write"):
            at = at or rng.randint(1, writes)
            trial_env.update(FI_AT=str(at), FI_WHEN=kind.split("-")[1])
            moment = f"{kind.split('-')[1]} replacement {at}/{writes}"
            process = inas([*run_args, "--out", str(run_dir)], trial_env)
            process.communicate()
        else:
            delay, missed = rng.uniform(0.0, duration), 0
            for _ in range(6):  # a run that ended before the signal was not killed: again, sooner
                process = inas([*run_args, "--out", str(run_dir)], env)
                try:
                    process.communicate(timeout=delay)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL if kind == "sigkill" else signal.SIGINT)
                    process.communicate()
                if process.returncode != 0:
                    break
                shutil.rmtree(run_dir, ignore_errors=True)  # exit 0: it had finished before the signal
                delay, missed = delay / 2, missed + 1
            moment = f"{delay:.1f} s of {duration:.1f} s" + (f" ({missed} run(s) ended before it)" if missed else "")
        killed_code = process.returncode
        commands = finish(run_args, run_dir, env, log)
        problems = differences(run_dir, reference)
        outcomes[kind][0] += 1
        outcomes[kind][1] += not problems
        rows.append([trial, kind, moment, killed_code, commands, "identical" if not problems else ", ".join(problems)])
        print(f"trial {trial}: {kind} at {moment} (exit {killed_code}) -> {commands} command(s) to finish: "
              f"{'identical' if not problems else problems}", flush=True)
        if args.keep is None and not problems:
            shutil.rmtree(run_dir)

    total = sum(identical for _, identical in outcomes.values())
    summary = markdown_table(["kill", "trials", "ended identical"],
                             [[kind, n, f"{identical}/{n}"] for kind, (n, identical) in outcomes.items() if n]
                             + [["all", len(plan), f"**{total}/{len(plan)}**"]])
    body = "\n\n".join([
        "## Fault injection: runs killed at random moments",
        f"`{command_line()}` on {machine_line()}. Run: `inas {' '.join(run_args)}` "
        f"({duration:.0f} s uninterrupted, {writes} file replacements). Each trial is killed once, then "
        "continued with `inas run --resume DIR` (or restarted, when killed before config.json) until it "
        "exits 0, and compared with the uninterrupted run: same files and no others, config.json, "
        "results.json and results.csv equal but for wall-clock seconds, labelled set, architecture and "
        "weights bit-identical. Exit when killed: -9 SIGKILL, 130 Ctrl-C, -2 Ctrl-C during the interpreter's "
        "exit (every file written); a run that ended before its signal (runs vary in speed on a shared "
        "machine) was started again and signalled at half the delay.",
        summary,
        "<details><summary>every trial</summary>\n\n"
        + markdown_table(["trial", "kill", "moment", "exit when killed", "commands to finish", "result"], rows)
        + "\n\n</details>",
        "A larger run, every file-write window included: `python benchmarks/fault_injection.py --kills 100 "
        f"--every-write --seed 1` ({100 + 2 * writes} trials, each about twice the run's time).",
    ])
    print(summary)
    if not args.no_write:
        write_section("fault-injection", body)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    if total != len(plan):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
