"""What tracing costs: `python benchmarks/trace.py [--repeat 3]` (about a minute).

1. Engine: `pipeline.events()` over 100,000 items through `single | batch(16) | single`
   (trivial async functions), in a fresh process each: the engine before tracing existed
   (`--engine-base`, default ba03411, checked out with `git archive`), this one with trace off,
   with `on_call` only (what the service passes for its metrics), and with `trace=True`. The
   events of a run with trace off are compared with the base's: the same types, values and
   sources in the same order (elapsed aside).
2. Service: a 10,000-item run of the built-in `timeline` with every delay 0 (so the run is bound
   by the service's own work: validation, the engine, encoding, streaming), streamed as NDJSON
   from the app in process (httpx over ASGI): the service of `--service-base` (default 9b57111,
   the service before tracing existed) against this one with trace off and with `?trace=true`;
   results per second of the whole response.

Best of `--repeat` runs. Figures depend on the machine's load: on a shared machine they are
indicative only; run it a few times.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENGINE_ITEMS = 100_000
SERVICE_ITEMS = 10_000  # CONVEYOR_MAX_ITEMS' default


async def _engine(variant: str) -> dict[str, Any]:
    from conveyor_core import batch_task, single_task

    @single_task
    async def first(x: int) -> int:
        return x + 1

    @batch_task(max_size=16)
    async def batch(xs: list[int]) -> list[int]:
        return xs

    @single_task
    async def last(x: int) -> int:
        return x * 2

    pipeline = first | batch | last
    options: dict[str, Any] = {}
    calls = 0
    if variant == "on_call":

        def on_call(event: Any) -> None:
            nonlocal calls
            calls += 1

        options["on_call"] = on_call
    elif variant == "trace":
        options["trace"] = True
    digest, stages, started = [], 0, time.perf_counter()
    async for event in pipeline.events(range(ENGINE_ITEMS), **options):
        if event.type == "stage":
            stages += 1
        elif event.type != "end":
            digest.append((event.type, getattr(event, "value", None), event.sources))
    elapsed = time.perf_counter() - started
    return {
        "items_per_s": ENGINE_ITEMS / elapsed,
        "stage_events": stages,
        "calls_seen": calls,
        "digest": hashlib.sha256(repr(digest).encode()).hexdigest(),
    }


async def _service(trace: bool) -> dict[str, Any]:
    import httpx

    from app.core.config import Settings
    from app.main import create_app

    app = create_app(Settings(log_level="warning"))
    body = {"items": [0] * SERVICE_ITEMS}  # timeline: every item waits 0 s
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            started = time.perf_counter()
            response = await client.post(
                "/pipelines/timeline/stream",
                json=body,
                params={"trace": "true"} if trace else {},
            )
            elapsed = time.perf_counter() - started
    response.raise_for_status()
    events = response.text.count("\n")
    results = response.text.count('"type":"result"')
    if results != SERVICE_ITEMS:
        raise SystemExit(f"the service run gave {results} results, not {SERVICE_ITEMS}")
    return {"results_per_s": results / elapsed, "events": events}


def _child(kind: str, variant: str) -> None:
    if kind == "engine":
        figures = asyncio.run(_engine(variant))
    else:
        figures = asyncio.run(_service(variant == "trace"))
    print(json.dumps(figures))


def _checkout(rev: str, paths: list[str], into: Path) -> Path:
    """`paths` of `rev` (git archive) under `into`."""
    data = subprocess.run(
        ["git", "archive", rev, *paths], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as archive:
        archive.extractall(into, filter="data")
    return into


def _run(root: Path, kind: str, variant: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, variant],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise SystemExit(f"{kind} {variant} in {root}: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine-base", default="ba03411")
    parser.add_argument("--service-base", default="9b57111")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(*args.child)
    with tempfile.TemporaryDirectory() as tmp:
        engine_base = _checkout(args.engine_base, ["conveyor_core"], Path(tmp) / "engine")
        service_base = _checkout(args.service_base, ["conveyor_core", "app"], Path(tmp) / "service")
        runs: list[tuple[str, Path, str, str, str]] = [
            (
                "engine",
                engine_base,
                "off",
                f"engine {args.engine_base} (no tracing)",
                "items_per_s",
            ),
            ("engine", ROOT, "off", "engine now, trace off", "items_per_s"),
            ("engine", ROOT, "on_call", "engine now, on_call only", "items_per_s"),
            ("engine", ROOT, "trace", "engine now, trace=True", "items_per_s"),
            ("service", service_base, "off", f"service {args.service_base}", "results_per_s"),
            ("service", ROOT, "off", "service now, trace off", "results_per_s"),
            ("service", ROOT, "trace", "service now, ?trace=true", "results_per_s"),
        ]
        results: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            for kind, root, variant, label, _key in runs:
                results.setdefault(label, []).append(_run(root, kind, variant))
    for _kind, _root, _variant, label, key in runs:
        figures = results[label]
        rates = sorted(f[key] for f in figures)
        extra = {k: v for k, v in figures[0].items() if k not in (key, "digest")}
        print(
            f"{label:40s} {key} best {rates[-1]:>10,.0f}  "
            f"range {rates[0]:,.0f}-{rates[-1]:,.0f}  {extra}"
        )
    base = results[f"engine {args.engine_base} (no tracing)"][0]["digest"]
    now = results["engine now, trace off"][0]["digest"]
    print("engine events with trace off identical to the base's:", base == now)


if __name__ == "__main__":
    main()
