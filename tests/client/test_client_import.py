"""`import conveyor_core.client` without the `client` extra says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.app.conftest import ROOT

WITHOUT = """
import sys


class Missing:
    \"\"\"A meta-path finder that makes {module!r} uninstalled, as without the extra.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == {module!r} or name.startswith({module!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


for name in [n for n in sys.modules if n == {module!r} or n.startswith({module!r} + ".")]:
    del sys.modules[name]
sys.meta_path.insert(0, Missing())

import conveyor_core  # the engine needs no extra

try:
    import conveyor_core.client
except ModuleNotFoundError as exc:
    print(f"{{type(exc).__name__}}|{{exc.name}}|{{exc}}")
else:
    print("imported")
"""


@pytest.mark.parametrize("module", ["httpx", "h11"])
def test_import_without_the_client_extra_names_the_extra(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kind, name, message = result.stdout.strip().split("|", 2)
    assert kind == "ModuleNotFoundError" and name == module
    assert message == (
        f"conveyor_core.client needs the 'client' extra, which provides {module}: "
        'pip install "conveyor-streaming-core[client]"'
    )


def test_import_with_the_extra() -> None:
    import conveyor_core.client as client

    assert client.ConveyorClient.__module__ == "conveyor_core._client"
