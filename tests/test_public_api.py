"""The public boundary of the runtime: what users and generated code may import.

The public API is what ``docket_runtime`` re-exports (its ``__all__`` is
pinned here), plus the public modules ``plan`` (the generator's contract),
``errors``, ``context``, ``events``, ``retry``, ``testing``, ``diagram``,
``views``, ``otel``, ``stores`` and ``durable``.
Engine modules are private (a leading underscore), and generated modules
import only public names.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import docket_runtime
import docket_runtime.stores

ROOT = Path(docket_runtime.__file__).resolve().parent
GOLDEN = Path(__file__).resolve().parent / "golden"

PUBLIC_MODULES = {
    "cli",
    "codec",
    "context",
    "diagram",
    "errors",
    "events",
    "options_pb2",
    "otel",
    "plan",
    "retry",
    "testing",
    "views",
}
PUBLIC_PACKAGES = {"durable", "stores"}
# Modules that generated code imports by name: the plan contract, and the durable module
# (for type checkers, and inside the methods that call it: it needs Procrastinate).
PUBLIC_IMPORTS = {"plan", "durable"}


def test_the_public_api_is_pinned() -> None:
    assert docket_runtime.__all__ == [
        "Abort",
        "Batch",
        "BatchProgress",
        "BindError",
        "CacheLookup",
        "CachePolicy",
        "CacheScope",
        "DeadlineExceeded",
        "Delivery",
        "DocketError",
        "Events",
        "ExecutionAborted",
        "ExecutionFinished",
        "Graph",
        "GraphPlan",
        "HandOff",
        "Input",
        "InputKind",
        "ItemError",
        "ItemFailed",
        "RetryLater",
        "RetryPolicy",
        "Stage",
        "Step",
        "StepClaimed",
        "StepContext",
        "StepEvent",
        "StepFailed",
        "StepRetrying",
        "StepTimedOut",
        "Suspended",
        "Target",
        "context",
        "shielded",
    ]
    for name in docket_runtime.__all__:
        value = getattr(docket_runtime, name)
        assert inspect.getdoc(value), f"docket_runtime.{name} has no docstring"


def test_the_stores_api_is_pinned() -> None:
    assert docket_runtime.stores.__all__ == [
        "SCHEMA_VERSION",
        "AttemptRecord",
        "AttemptStatus",
        "Claim",
        "ExecutionRecord",
        "ExecutionStatus",
        "MemoryStore",
        "MigrationRecord",
        "SchemaVersionError",
        "Scope",
        "StepEnd",
        "StepRunRecord",
        "StepStatus",
        "Store",
        "StoreError",
        "StoreRejected",
        "StoreUnavailable",
        "StoreUrlError",
        "StoredResult",
        "connect",
        "default_owner",
        "global_key",
        "open_store",
        "redact_url",
        "workflow_key",
    ]
    assert all(hasattr(docket_runtime.stores, name) for name in docket_runtime.stores.__all__)


def test_engine_modules_are_private() -> None:
    for module in pkgutil.iter_modules([str(ROOT)]):
        if module.name.startswith("_"):
            continue
        if module.ispkg:
            assert module.name in PUBLIC_PACKAGES, f"docket_runtime.{module.name} is not public"
        else:
            assert module.name in PUBLIC_MODULES, (
                f"docket_runtime.{module.name} is an engine module: name it _{module.name}"
            )
        importlib.import_module(f"docket_runtime.{module.name}")


def test_generated_code_imports_only_public_names() -> None:
    goldens = sorted(GOLDEN.rglob("*_docket.py"))
    assert goldens
    for path in goldens:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "docket_runtime"
            ):
                assert node.module == "docket_runtime", f"{path.name} imports {node.module}"
                for alias in node.names:
                    assert alias.name in docket_runtime.__all__ or alias.name in PUBLIC_IMPORTS, (
                        f"{path.name} imports docket_runtime.{alias.name}"
                    )


def _fresh_python(code: str, path: Path | None = None) -> str:
    """What ``code`` prints in a new interpreter (``path`` first on ``sys.path``)."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_a_generated_pb2_loads_the_options_module_only(gen_dir: Path) -> None:
    loaded = _fresh_python(
        "import sys\n"
        "import testgraphs.shapes_pb2\n"
        "print(*sorted(m for m in sys.modules if m.startswith('docket_runtime')))\n",
        gen_dir,
    )
    assert loaded.split() == ["docket_runtime", "docket_runtime.options_pb2"]


def test_public_names_load_on_first_use_from_where_type_checkers_read_them() -> None:
    source = ast.parse((ROOT / "__init__.py").read_text())
    checked = {}  # name -> module, from the imports under `if TYPE_CHECKING:`
    for node in ast.walk(source):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for found in ast.walk(node):
                if isinstance(found, ast.ImportFrom):
                    checked.update({a.name: "." + (found.module or "") for a in found.names})
    homes = docket_runtime._HOMES
    assert checked == homes
    assert sorted(homes) == docket_runtime.__all__
    assert set(docket_runtime.__all__) <= set(dir(docket_runtime))
    everything = _fresh_python(
        "from docket_runtime import *\n"
        "import docket_runtime.context\n"
        "import docket_runtime\n"
        "print(callable(context), docket_runtime.context is context, Graph.__name__)\n"
    )
    assert everything.split() == ["True", "True", "Graph"]
