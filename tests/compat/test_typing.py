"""mypy understands the API: the types it infers for tasks, pipelines and streams (section 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

USAGE = Path(__file__).with_name("typed") / "usage.py"
MODULE_PATH = re.compile(r"\b(?:[a-z_][\w]*\.)+(?=[A-Z]\w*\[)")  # conveyor_core._tasks.X[ -> X[


def expectations() -> dict[int, tuple[str, str]]:
    """Line number to ("R", revealed type) or ("E", error code), from the file's comments."""
    found = {}
    for number, line in enumerate(USAGE.read_text().splitlines(), 1):
        match = re.search(r"# ([RE]): (.+)$", line)
        if match:
            found[number] = (match.group(1), match.group(2).strip())
    return found


def test_mypy_infers_the_types_and_reports_wrong_uses(tmp_path: Path) -> None:
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\npython_version = 3.11\n")
    out, err, _ = mypy_api.run(
        [
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--show-error-codes",
            "--hide-error-context",
            "--no-error-summary",
            str(USAGE),
        ]
    )
    assert not err, err
    got: dict[int, list[tuple[str, str]]] = {}
    for line in out.splitlines():
        if Path(line.split(":", 1)[0]).resolve() != USAGE:  # an error of the library itself
            raise AssertionError(f"mypy: {line}")
        revealed = re.match(r".*?:(\d+): note: Revealed type is \"(.*)\"$", line)
        error = re.match(r".*?:(\d+): error: .*\[([\w-]+)\]$", line)
        if revealed:
            got.setdefault(int(revealed.group(1)), []).append(
                ("R", MODULE_PATH.sub("", revealed.group(2)))
            )
        elif error:
            got.setdefault(int(error.group(1)), []).append(("E", error.group(2)))
        else:
            raise AssertionError(f"unexpected mypy output: {line}")
    expected = expectations()
    assert len(expected) > 20
    assert {n: sorted(set(v)) for n, v in got.items()} == {n: [e] for n, e in expected.items()}
