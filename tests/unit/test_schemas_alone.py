"""schemas/ is the contract alone: importing every module of it loads nothing of the worker, so the
other side of the topics can take the models, and the worker's rules cannot leak into the wire format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: this test process has long since imported the worker.
_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import schemas
names = sorted(module.name for module in pkgutil.walk_packages(schemas.__path__, "schemas."))
for name in names:
    importlib.import_module(name)
worker = sorted(name for name in sys.modules if name == "worker" or name.startswith("worker."))
print(json.dumps({"imported": names, "worker": worker}))
"""


def test_importing_every_schemas_module_loads_no_worker_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    found = json.loads(done.stdout)
    assert {"schemas.envelope", "schemas.inputs", "schemas.outputs", "schemas.wire"} <= set(found["imported"])
    assert found["worker"] == []
