"""Run each example program under conveyor-streaming 1.2.1 and under this project; compare.

    .venv/bin/python scripts/compare_examples.py ../shared/seed/conveyor-streaming-1.2.1/examples

Each program runs in a fresh process from an empty directory, once with the earlier library's
interpreter (`--old-python`, default `benchmarks/.venv-old/bin/python`, where
`benchmarks/engine.py` installs conveyor-streaming 1.2.1) and once with this project's (the
interpreter running this script), `random` seeded the same in both. Output is normalised
(timings, percentages and run ids become placeholders) and compared: `same` (line for line),
`same lines` (the same lines in another order: concurrent tasks print in another interleaving),
`same shape` (only numbers differ, for programs that use `random`), or `differs` (a diff is
printed). The exit status is 1 if any program differs or fails under this project.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_PYTHON = ROOT / "benchmarks" / ".venv-old" / "bin" / "python"
RUNNER = (
    "import random, runpy, sys; random.seed(int(sys.argv[2])); sys.argv = sys.argv[1:2]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
NORMALISE = [
    (re.compile(r"\b[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"(?<![\w.])[0-9a-f]{8}(?![\w])"), "<id>"),  # a pipeline id's first 8
    (re.compile(r"-?\d+(\.\d+)?%"), "<pct>"),
    (re.compile(r"\d+\.\d+"), "<t>"),  # seconds, and any other float
]


@dataclass
class Outcome:
    name: str
    verdict: str
    old_status: int
    new_status: int
    diff: str = ""


def run(python: Path | str, program: Path, seed: int, timeout: float) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as empty:  # no conveyor/ package beside it
        done = subprocess.run(
            [str(python), "-I", "-c", RUNNER, str(program), str(seed)],
            cwd=empty,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    return done.returncode, done.stdout + done.stderr


def normalise(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        for pattern, placeholder in NORMALISE:
            line = pattern.sub(placeholder, line)
        lines.append(line.rstrip())
    return lines


def compare(program: Path, old_python: Path | str, seed: int, timeout: float) -> Outcome:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both at once: they mostly sleep
        old_run = pool.submit(run, old_python, program, seed, timeout)
        new_run = pool.submit(run, sys.executable, program, seed, timeout)
        (old_status, old_out), (new_status, new_out) = old_run.result(), new_run.result()
    old, new = normalise(old_out), normalise(new_out)
    if new_status != 0 or old_status != new_status:
        verdict = "FAILS" if new_status != 0 else "differs"
    elif old == new:
        verdict = "same"
    elif sorted(old) == sorted(new):
        verdict = "same lines"
    elif "random" in program.read_text() and shape(old) == shape(new):
        verdict = "same shape"
    else:
        verdict = "differs"
    diff = ""
    if verdict not in ("same", "same lines", "same shape"):
        diff = "\n".join(difflib.unified_diff(old, new, "1.2.1", "this project", lineterm=""))
    return Outcome(program.name, verdict, old_status, new_status, diff)


def shape(lines: list[str]) -> list[str]:
    return sorted(re.sub(r"-?\d+", "#", line) for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("examples", type=Path, help="the folder of example programs")
    parser.add_argument("--old-python", default=OLD_PYTHON, help="interpreter with 1.2.1")
    parser.add_argument("--seed", type=int, default=0, help="random.seed for both runs")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per program")
    parser.add_argument("--only", help="comma-separated program names (without .py)")
    args = parser.parse_args(argv)
    if not Path(args.old_python).exists():
        parser.error(
            f"no {args.old_python}: run benchmarks/engine.py once (it installs 1.2.1 there), "
            "or give --old-python"
        )
    programs = sorted(args.examples.glob("*.py"))
    if args.only:
        wanted = set(args.only.split(","))
        programs = [p for p in programs if p.stem in wanted]
    outcomes = []
    for program in programs:
        outcome = compare(program, args.old_python, args.seed, args.timeout)
        outcomes.append(outcome)
        print(f"{outcome.name:40} {outcome.verdict}", flush=True)
    for outcome in outcomes:
        if outcome.diff:
            print(
                f"\n=== {outcome.name}: {outcome.verdict} (exit {outcome.old_status} vs "
                f"{outcome.new_status})\n{outcome.diff}"
            )
    return 1 if any(o.verdict in ("FAILS", "differs") for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
