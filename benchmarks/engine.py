"""conveyor_core against its baseline, conveyor-streaming 1.2.1, aiostream and a no-library floor.

    python benchmarks/engine.py [--only cpu,list] [--repeat 3] [--timeout 180] [--json out.json]
                                [--libs ours,base,old,aiostream,floor] [--baseline REV]
                                [--async-input]

Each run of each workload is a fresh process running `_engine_workloads.py`:
- ours: this checkout's `conveyor_core`, with this interpreter;
- base: the engine at git revision `--baseline` (default ba03411, the engine before this round's
  rewrite), exported with `git archive` into benchmarks/.baseline-REV and run the same way;
- old: conveyor-streaming 1.2.1, and aiostream: aiostream 0.8.1, both with
  `benchmarks/.venv-old/bin/python` (created and filled from PyPI on first use) in isolated mode, so
  it imports the old `conveyor` rather than the repo's alias package;
- floor: the same calls with no library (a plain loop; 4,096 plain worker tasks for mem).
A library that has no form of a workload (aiostream outside cpu and list, floor for io and
endless) is shown as `-`. A run that fails or hangs is reported as `error: ...` or `timeout`,
never fatal. With `--repeat N` each figure is the best of the N runs (lowest time, latency and
memory, highest throughput) except the clean-up counts, which are the worst; the libraries'
runs are interleaved, so drift on a shared machine hits them alike.
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

from _engine_workloads import LIB_KINDS, WORKLOADS  # benchmarks/ is this script's sys.path[0]

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
WORKER = HERE / "_engine_workloads.py"
OLD_VENV = HERE / ".venv-old"
OLD_SPEC = "conveyor-streaming==1.2.1"
AIOSTREAM_SPEC = "aiostream==0.8.1"
BASELINE = "ba03411"
LIBS = ("ours", "base", "old", "aiostream", "floor")
LIB_TITLES = {
    "ours": "ours",
    "base": "baseline",
    "old": "1.2.1",
    "aiostream": "aiostream",
    "floor": "floor",
}
# which libraries have a form of which workload: what _engine_workloads.py defines ("base" is
# our engine at another revision)
SUPPORTS = {
    lib: {
        name
        for name, forms in WORKLOADS.items()
        if LIB_KINDS["ours" if lib == "base" else lib] in forms
    }
    for lib in LIBS
}

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
    "list": [RATE, WALL, RSS],
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
    "cpu": "100,000 items, single | batch(16) summing | single, trivial async functions (list)",
    "list": "100,000 items, single | batch(16) returning a list | single, trivial (list)",
    "io": "2,000 items, single | batch(16) | single, every call sleeps 50 ms (list)",
    "mem": "100,000 items, single | single, each sleeps 1 ms (lazy source, async for)",
    "endless": "endless async source, 1 item / 10 ms, single | single, break after 20",
    "scale": "1,000,000 items, three trivial single stages (lazy source, async for)",
}

# The targets of issue 8 (cpu, list, mem) and earlier ones, checked on our figures:
# (text, check(ours, others) -> met, or None when a figure is missing).
Check = Callable[[Figures, dict[str, Figures]], bool | None]


def _rate_over(lib: str, times: float) -> tuple[str, Check]:
    def check(ours: Figures, others: dict[str, Figures]) -> bool | None:
        other = others.get(lib)
        return None if other is None else ours["items_per_s"] >= times * other["items_per_s"]

    return f"items/s >= {times:g}x {LIB_TITLES[lib]}", check


def _within(ours: Figures, floor: Figures | None, times: float) -> bool | None:
    return None if floor is None else ours["wall_s"] <= times * floor["wall_s"]


BATCH_TARGETS = [_rate_over("base", 2), _rate_over("old", 15), _rate_over("aiostream", 40)]
TARGETS: dict[str, list[tuple[str, Check]]] = {
    "cpu": BATCH_TARGETS,
    "list": BATCH_TARGETS,
    "io": [("wall <= 1.3x ideal", lambda ours, others: ours["x_ideal"] <= 1.3)],
    "mem": [
        ("wall <= 1.15x floor", lambda ours, others: _within(ours, others.get("floor"), 1.15)),
        ("RSS growth < 20 MB", lambda ours, others: ours["rss_growth_mb"] < 20),
    ],
    "endless": [("first result <= 5 ms", lambda ours, others: ours["first_result_ms"] <= 5)],
    "scale": [("RSS growth < 50 MB", lambda ours, others: ours["rss_growth_mb"] < 50)],
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_old_python() -> tuple[Path | None, str | None]:
    """benchmarks/.venv-old's interpreter with OLD_SPEC and AIOSTREAM_SPEC, or why it is not."""
    python = OLD_VENV / "bin" / "python"
    try:
        if not python.exists():
            log(f"creating {OLD_VENV.relative_to(ROOT)}")
            base = shutil.which("python3") or sys.executable
            subprocess.run([base, "-m", "venv", str(OLD_VENV)], check=True, capture_output=True)
        for spec in (OLD_SPEC, AIOSTREAM_SPEC):
            name, wanted = spec.split("==")
            probe = f"import importlib.metadata as m; print(m.version({name!r}))"
            found = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True)
            if found.stdout.strip() != wanted:
                log(f"installing {spec} into {OLD_VENV.relative_to(ROOT)}")
                pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                subprocess.run([*pip, spec], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        return None, f"could not set up {OLD_SPEC} and {AIOSTREAM_SPEC}: {_last_line(exc.stderr)}"
    except OSError as exc:
        return None, f"could not set up {OLD_SPEC} and {AIOSTREAM_SPEC}: {exc}"
    return python, None


def ensure_baseline(revision: str) -> tuple[Path | None, str | None]:
    """A directory holding `conveyor_core` as of `revision` (git archive), or why there is none."""
    target = HERE / f".baseline-{revision}"
    if (target / "conveyor_core" / "__init__.py").exists():
        return target, None
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "conveyor_core"],
            check=True,
            capture_output=True,
        )
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    except subprocess.CalledProcessError as exc:
        return None, f"could not export {revision}: {_last_line(exc.stderr)}"
    except OSError as exc:
        return None, f"could not export {revision}: {exc}"
    return target, None


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


@dataclass(frozen=True)
class Lib:
    name: str  # one of LIBS
    python: Path
    root: Path  # where `conveyor_core` is imported from (ours, base) or the working directory


def run_once(lib: Lib, workload: str, timeout: float, async_input: bool) -> Figures:
    """One fresh process; its figures plus `status` ("ok", "timeout" or "error: ...")."""
    kind = "ours" if lib.name == "base" else lib.name
    command = [str(lib.python), "-I", str(WORKER), "--lib", kind, "--workload", workload]
    command += ["--repo-root", str(lib.root), "--input", "async" if async_input else "native"]
    cwd = lib.root
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
    """Ours over each other library, per metric, and the targets checked on our figures."""
    bests = {lib: entry["best"] for lib, entry in results.items() if entry.get("best")}
    ours = bests.pop("ours", None)
    comparison: Figures = {"ours_over": {}, "targets": []}
    if ours is None:
        return comparison
    for lib, best in bests.items():
        ratios = {}
        for metric in METRICS[workload]:
            a, b = ours.get(metric.key), best.get(metric.key)
            if a is not None and b:
                ratios[metric.key] = round(a / b, 4)
        comparison["ours_over"][lib] = ratios
    for text, check in TARGETS[workload]:
        try:
            met = check(ours, bests)
        except (KeyError, TypeError):
            met = None
        comparison["targets"].append({"target": text, "met": met})
    return comparison


def _cell(entry: Figures | None, metric: Metric) -> str:
    if entry is None:
        return "-"
    if "best" not in entry:
        return "timeout" if entry["status"] == "timeout" else "error"
    return metric.show(entry["best"].get(metric.key))


def print_table(report: Figures) -> None:
    libs = report["libs"]
    others = [lib for lib in libs if lib != "ours"]
    header = ["figure", *(LIB_TITLES[lib] for lib in libs)]
    header += [f"/{LIB_TITLES[lib]}" for lib in others if "ours" in libs]
    widths = [36] + [14] * len(libs) + [11] * (len(header) - len(libs) - 1)
    print()
    print(f"conveyor_core against {', '.join(report['meta']['against'])}; {report['aggregation']}")
    print("ours/X columns: ours divided by X (items/s: higher is better; times: lower is better)")
    for workload, entry in report["workloads"].items():
        print()
        print(f"[{workload}] {DESCRIPTIONS[workload]}")
        print("  " + "".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True)))
        for metric in METRICS[workload]:
            cells = [metric.label, *(_cell(entry.get(lib), metric) for lib in libs)]
            if "ours" in libs:
                for lib in others:
                    ratio = entry["comparison"]["ours_over"].get(lib, {}).get(metric.key)
                    cells.append("-" if ratio is None else f"{ratio:.3g}x")
            print("  " + "".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)))
        for lib in libs:
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
    parser.add_argument("--libs", default=",".join(LIBS), help="comma-separated, out of these")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the base engine")
    parser.add_argument("--repeat", type=int, default=1, help="runs per workload (best of N)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per process")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
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
    args.lib_names = [lib for lib in LIBS if lib in args.libs.split(",")]
    unknown = sorted(set(args.libs.split(",")) - set(LIBS))
    if unknown:
        parser.error(f"unknown librar(ies): {', '.join(unknown)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def set_up(names: list[str], baseline: str) -> tuple[dict[str, Lib], dict[str, str]]:
    """The libraries that could be set up, and why the others could not."""
    libs: dict[str, Lib] = {}
    errors: dict[str, str] = {}
    here = Path(sys.executable)
    old_python: Path | None = None
    old_error: str | None = None
    if {"old", "aiostream"} & set(names):
        old_python, old_error = ensure_old_python()
    for name in names:
        if name in ("ours", "floor"):
            libs[name] = Lib(name, here, ROOT)
        elif name == "base":
            root, error = ensure_baseline(baseline)
            if root is None:
                errors[name] = f"error: {error}"
            else:
                libs[name] = Lib(name, here, root)
        elif old_python is None:
            errors[name] = f"error: {old_error}"
        else:
            libs[name] = Lib(name, old_python, Path(tempfile.gettempdir()))
    return libs, errors


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    libs, setup_errors = set_up(args.lib_names, args.baseline)
    against = {
        "base": f"its baseline {args.baseline}",
        "old": OLD_SPEC,
        "aiostream": AIOSTREAM_SPEC,
        "floor": "a floor (no library)",
    }
    report: Figures = {
        "meta": {
            "against": [against[lib] for lib in args.lib_names if lib in against],
            "baseline": args.baseline,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "repeat": args.repeat,
            "timeout_s": args.timeout,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "libs": args.lib_names,
        "aggregation": (
            f"best of {args.repeat} run(s) per figure (lowest time/latency/memory, highest "
            "items/s; clean-up counts: worst); every run is a fresh process"
        ),
        "workloads": {},
    }
    for workload in args.workloads:
        runnable = {name: lib for name, lib in libs.items() if workload in SUPPORTS[name]}
        runs: dict[str, list[Figures]] = {name: [] for name in runnable}
        for attempt in range(args.repeat):
            for name, lib in runnable.items():  # interleaved, so drift hits all alike
                log(f"{workload}: {name} run {attempt + 1}/{args.repeat}")
                runs[name].append(run_once(lib, workload, args.timeout, args.async_input))
        entry: Figures = {name: summarize(workload, lib_runs) for name, lib_runs in runs.items()}
        for name, error in setup_errors.items():
            if workload in SUPPORTS[name]:
                entry[name] = {"status": error, "runs": []}
        entry["comparison"] = compare(workload, entry)
        report["workloads"][workload] = entry

    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
