"""Our engine (`conveyor_core`) against the earlier library, conveyor-streaming 1.2.1.

    python benchmarks/engine.py [--only cpu,io] [--repeat 3] [--timeout 180] [--json out.json]
                                [--skip-old | --skip-ours] [--async-input]

Each run of each workload is a fresh process running `_engine_workloads.py`: ours with this
interpreter and the repo root on `sys.path`; the old library with `benchmarks/.venv-old/bin/python`
(created and filled from PyPI on first use) in isolated mode, so it imports the old `conveyor`
rather than the repo's alias package. A run that fails or hangs is reported as `error: ...` or
`timeout`, never fatal. With `--repeat N` each figure is the best of the N runs (lowest time,
latency and memory, highest throughput) except the clean-up counts, which are the worst.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
WORKER = HERE / "_engine_workloads.py"
OLD_VENV = HERE / ".venv-old"
OLD_SPEC = "conveyor-streaming==1.2.1"
LIBS = ("ours", "old")

Figures = dict[str, Any]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    fmt: str
    higher_is_better: bool = False
    worst: bool = False  # aggregate with the worst run rather than the best (leak counters)

    def pick(self, values: list[float]) -> float:
        return max(values) if self.higher_is_better != self.worst else min(values)

    def show(self, value: Any) -> str:
        return "-" if value is None else self.fmt.format(value)


WALL = Metric("wall_s", "wall time (s)", "{:.3f}")
RATE = Metric("items_per_s", "items/s", "{:,.0f}", higher_is_better=True)
RSS = Metric("rss_growth_mb", "peak RSS growth (MB)", "{:.1f}")

METRICS: dict[str, list[Metric]] = {
    "cpu": [RATE, WALL, RSS],
    "io": [WALL, Metric("x_ideal", "x ideal 0.15 s", "{:.2f}x"), RSS],
    "mem": [WALL, RSS],
    "endless": [
        Metric("first_result_ms", "first result after first item (ms)", "{:.2f}"),
        Metric("mean_gap_ms", "mean gap between results (ms)", "{:.2f}"),
        Metric("tasks_left_after_break", "tasks alive 0.2 s after break", "{:d}", worst=True),
        Metric("source_pulled_after_break", "source items pulled after break", "{:d}", worst=True),
    ],
    "scale": [WALL, RATE, RSS],
}

DESCRIPTIONS = {
    "cpu": "100,000 items, single | batch(16) | single, trivial async functions (list)",
    "io": "2,000 items, single | batch(16) | single, every call sleeps 50 ms (list)",
    "mem": "100,000 items, single | single, each sleeps 1 ms (lazy source, async for)",
    "endless": "endless async source, 1 item / 10 ms, single | single, break after 20",
    "scale": "1,000,000 items, three trivial single stages (lazy source, async for)",
}

# The targets of issue 2, checked on our figures: (text, check(ours, old) -> met or None).
Check = Callable[[Figures, Figures | None], bool | None]
TARGETS: dict[str, list[tuple[str, Check]]] = {
    "cpu": [
        (
            "items/s >= 10x old",
            lambda ours, old: (
                None if old is None else ours["items_per_s"] >= 10 * old["items_per_s"]
            ),
        )
    ],
    "io": [("wall <= 1.3x ideal", lambda ours, old: ours["x_ideal"] <= 1.3)],
    "mem": [
        ("wall < 1.5 s", lambda ours, old: ours["wall_s"] < 1.5),
        ("RSS growth < 20 MB", lambda ours, old: ours["rss_growth_mb"] < 20),
    ],
    "endless": [("first result <= 5 ms", lambda ours, old: ours["first_result_ms"] <= 5)],
    "scale": [("RSS growth < 50 MB", lambda ours, old: ours["rss_growth_mb"] < 50)],
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_old_python() -> tuple[Path | None, str | None]:
    """The interpreter of benchmarks/.venv-old with OLD_SPEC installed, or the reason it is not."""
    python = OLD_VENV / "bin" / "python"
    wanted = OLD_SPEC.split("==")[1]
    try:
        if not python.exists():
            log(f"creating {OLD_VENV.relative_to(ROOT)}")
            base = shutil.which("python3") or sys.executable
            subprocess.run([base, "-m", "venv", str(OLD_VENV)], check=True, capture_output=True)
        probe = "import importlib.metadata as m; print(m.version('conveyor-streaming'))"
        found = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True)
        if found.stdout.strip() != wanted:
            log(f"installing {OLD_SPEC} into {OLD_VENV.relative_to(ROOT)}")
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run([*pip, OLD_SPEC], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        return None, f"could not set up {OLD_SPEC}: {_last_line(exc.stderr) or exc}"
    except OSError as exc:
        return None, f"could not set up {OLD_SPEC}: {exc}"
    return python, None


def _last_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _figures_in(stdout: str | bytes | None) -> Figures | None:
    if isinstance(stdout, bytes):
        stdout = stdout.decode(errors="replace")
    for line in reversed((stdout or "").splitlines()):
        if line.startswith("{"):
            try:
                figures: Figures = json.loads(line)
            except json.JSONDecodeError:
                continue
            return figures
    return None


def run_once(lib: str, python: Path, workload: str, timeout: float, async_input: bool) -> Figures:
    """One fresh process; its figures plus `status` ("ok", "timeout" or "error: ...")."""
    command = [str(python), "-I", str(WORKER), "--lib", lib, "--workload", workload]
    command += ["--repo-root", str(ROOT), "--input", "async" if async_input else "native"]
    cwd = ROOT if lib == "ours" else Path(tempfile.gettempdir())
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        figures = _figures_in(exc.stdout)
        if figures is None:
            return {"status": "timeout", "timeout_s": timeout}
        return figures | {"status": "ok", "note": f"measured, then hung on exit ({timeout:.0f} s)"}
    figures = _figures_in(done.stdout)
    if figures is None:
        message = _last_line(done.stderr) or f"exit code {done.returncode}, no output"
        return {"status": f"error: {message}"}
    figures["status"] = "ok"
    figures["process_s"] = round(time.perf_counter() - start, 2)
    if done.returncode != 0:
        figures["note"] = f"exit code {done.returncode} after measuring: {_last_line(done.stderr)}"
    elif "Traceback" in done.stderr or "exception" in done.stderr.lower():
        figures["note"] = f"logged on stderr: {_last_line(done.stderr)}"
    if not figures.get("ok", True):
        figures["status"] = f"error: wrong results: {figures.get('check', '?')}"
    return figures


def summarize(workload: str, runs: list[Figures]) -> Figures:
    """Best figure per metric over the good runs; the status of the first failure otherwise."""
    good = [run for run in runs if run["status"] == "ok"]
    summary: Figures = {"runs": runs}
    if not good:
        summary["status"] = runs[0]["status"] if runs else "not run"
        return summary
    summary["status"] = "ok" if len(good) == len(runs) else f"ok in {len(good)}/{len(runs)} runs"
    best: Figures = {}
    for metric in METRICS[workload]:
        values = [run[metric.key] for run in good if run.get(metric.key) is not None]
        best[metric.key] = metric.pick(values) if values else None
    summary["best"] = best
    notes = sorted({run["note"] for run in runs if "note" in run})
    if notes:
        summary["notes"] = notes
    return summary


def compare(workload: str, results: dict[str, Figures]) -> Figures:
    ours = results.get("ours", {}).get("best")
    old = results.get("old", {}).get("best")
    comparison: Figures = {"ours_over_old": {}, "targets": []}
    if ours and old:
        for metric in METRICS[workload]:
            a, b = ours.get(metric.key), old.get(metric.key)
            if a is not None and b:
                comparison["ours_over_old"][metric.key] = round(a / b, 4)
    if ours:
        for text, check in TARGETS[workload]:
            try:
                met = check(ours, old)
            except (KeyError, TypeError):
                met = None
            comparison["targets"].append({"target": text, "met": met})
    return comparison


def print_table(report: Figures) -> None:
    width = (36, 16, 16, 10)
    rows = [("figure", "ours", "old 1.2.1", "ours/old")]
    print()
    print(f"conveyor_core vs {OLD_SPEC}; {report['aggregation']}")
    for workload, entry in report["workloads"].items():
        print()
        print(f"[{workload}] {DESCRIPTIONS[workload]}")
        print("  " + "".join(cell.ljust(w) for cell, w in zip(rows[0], width, strict=True)))
        for metric in METRICS[workload]:
            cells = [metric.label]
            for lib in LIBS:
                lib_entry = entry.get(lib)
                if lib_entry is None:
                    cells.append("skipped")
                elif "best" not in lib_entry:
                    cells.append("timeout" if lib_entry["status"] == "timeout" else "error")
                else:
                    cells.append(metric.show(lib_entry["best"].get(metric.key)))
            ratio = entry["comparison"]["ours_over_old"].get(metric.key)
            cells.append("-" if ratio is None else f"{ratio:.3g}x")
            print("  " + "".join(cell.ljust(w) for cell, w in zip(cells, width, strict=True)))
        for lib in LIBS:
            lib_entry = entry.get(lib) or {}
            status = lib_entry.get("status", "ok")
            if status != "ok":
                print(f"  {lib}: {status}")
            for run in lib_entry.get("runs", []):
                if run["status"] != "ok" and "best" in lib_entry:
                    print(f"  {lib}: one run: {run['status']}")
            for note in lib_entry.get("notes", []):
                print(f"  {lib}: {note}")
            inputs = sorted({run["input"] for run in lib_entry.get("runs", []) if "input" in run})
            if inputs and workload in ("mem", "scale", "endless"):
                print(f"  {lib} input: {', '.join(inputs)}")
        for target in entry["comparison"]["targets"]:
            verdict = {True: "met", False: "NOT met", None: "n/a"}[target["met"]]
            print(f"  target (ours): {target['target']}: {verdict}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated workloads out of {','.join(METRICS)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs per workload (best of N)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per process")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--skip-old", action="store_true", help="only run our engine")
    parser.add_argument("--skip-ours", action="store_true", help="only run the old library")
    parser.add_argument(
        "--async-input",
        action="store_true",
        help="give our engine an async generator (not a plain generator) in mem and scale",
    )
    args = parser.parse_args(argv)
    args.workloads = args.only.split(",") if args.only else list(METRICS)
    unknown = [name for name in args.workloads if name not in METRICS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pythons: dict[str, Path] = {}
    setup_errors: dict[str, str] = {}
    if not args.skip_ours:
        pythons["ours"] = Path(sys.executable)
    if not args.skip_old:
        old_python, error = ensure_old_python()
        if old_python is None:
            setup_errors["old"] = f"error: {error}"
        else:
            pythons["old"] = old_python

    report: Figures = {
        "meta": {
            "old_library": OLD_SPEC,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "repeat": args.repeat,
            "timeout_s": args.timeout,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "aggregation": (
            f"best of {args.repeat} run(s) per figure (lowest time/latency/memory, highest "
            "items/s; clean-up counts: worst); every run is a fresh process"
        ),
        "workloads": {},
    }
    for workload in args.workloads:
        runs: dict[str, list[Figures]] = {lib: [] for lib in pythons}
        for attempt in range(args.repeat):
            for lib, python in pythons.items():  # interleaved, so drift hits both alike
                log(f"{workload}: {lib} run {attempt + 1}/{args.repeat}")
                runs[lib].append(run_once(lib, python, workload, args.timeout, args.async_input))
        entry: Figures = {lib: summarize(workload, lib_runs) for lib, lib_runs in runs.items()}
        for lib, error in setup_errors.items():
            entry[lib] = {"status": error, "runs": []}
        entry["comparison"] = compare(workload, entry)
        report["workloads"][workload] = entry

    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
