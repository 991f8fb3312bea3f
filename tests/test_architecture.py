"""The dependency rule between the rooms, checked by walking every import (ast, no execution).

- ``geo`` imports nothing of ours;
- ``streams`` imports ``geo`` only;
- ``layers`` imports ``geo``, and ``streams`` only through one seam, ``layers/streams_seam.py``,
  which itself reaches only the streams models and settings (``ALLOWED_STREAMS_MODULES``);
- ``dashboard`` imports all three; nothing imports ``dashboard`` except ``bench`` (which
  measures the app) and the tests;
- ``bench`` imports no ``tests`` module.

Imports are found at module level and inside functions and classes, relative imports are
resolved, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name
count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: room -> the other rooms it may import
MAY_IMPORT: dict[str, frozenset[str]] = {
    "geo": frozenset(),
    "streams": frozenset({"geo"}),
    "layers": frozenset({"geo", "streams"}),
    "dashboard": frozenset({"geo", "streams", "layers"}),
    "bench": frozenset({"geo", "streams", "layers", "dashboard"}),
    "tests": frozenset({"geo", "streams", "layers", "dashboard", "bench"}),
}
ROOMS = tuple(MAY_IMPORT)
SEAM = "layers.streams_seam"


def _seam_allowed(root: Path) -> tuple[str, ...]:
    """Return ``ALLOWED_STREAMS_MODULES`` as written in the seam module (read, not imported)."""
    path = root / Path(*SEAM.split(".")).with_suffix(".py")
    if not path.exists():
        return ()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
        if any(getattr(t, "id", None) == "ALLOWED_STREAMS_MODULES" for t in targets):
            return tuple(ast.literal_eval(node.value))
    return ()


@dataclass(frozen=True)
class Import:
    """One import statement found in a module: where it is and what it names."""

    module: str
    path: Path
    line: int
    target: str


def module_name(root: Path, path: Path) -> tuple[str, bool]:
    """Return (dotted module name of ``path`` under ``root``, whether it is a package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def imports_in(root: Path, path: Path) -> Iterator[Import]:
    """Yield every import of ``path``: module level, in functions, relative ones resolved."""
    module, is_package = module_name(root, path)
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                name = base if alias.name == "*" else f"{base}.{alias.name}"
                yield Import(module, path, node.lineno, name.strip("."))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = getattr(func, "attr", None) or getattr(func, "id", None)
            arg = node.args[0]
            if called in ("import_module", "__import__") and isinstance(arg, ast.Constant):
                if isinstance(arg.value, str) and not arg.value.startswith("."):
                    yield Import(module, path, node.lineno, arg.value)


def _under(target: str, module: str) -> bool:
    return target == module or target.startswith(module + ".")


def rule_breaks(imp: Import, seam_allowed: tuple[str, ...]) -> str | None:
    """Return why ``imp`` breaks the dependency rule, or None when it keeps it."""
    room, target_room = imp.module.split(".")[0], imp.target.split(".")[0]
    if target_room not in ROOMS or target_room == room:
        return None
    if target_room not in MAY_IMPORT[room]:
        return f"{room} may not import {target_room}"
    if room == "layers" and target_room == "streams":
        if imp.module != SEAM:
            return f"layers reaches streams only through {SEAM}"
        if not any(_under(imp.target, allowed) for allowed in seam_allowed):
            return f"{SEAM} reaches only {', '.join(seam_allowed)}"
    return None


def violations(root: Path) -> list[str]:
    """Return "path:line: module imports target (why)" for every import breaking the rule."""
    seam_allowed = _seam_allowed(root)
    found = []
    for room in ROOMS:
        if not (root / room).is_dir():
            continue
        for path in sorted((root / room).rglob("*.py")):
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            for imp in imports_in(root, path):
                why = rule_breaks(imp, seam_allowed)
                if why is not None:
                    rel = imp.path.relative_to(root)
                    found.append(f"{rel}:{imp.line}: {imp.module} imports {imp.target} ({why})")
    return found


def test_the_rooms_keep_the_dependency_rule():
    broken = violations(REPO)
    assert not broken, "imports that break the rule (README, Architecture):\n" + "\n".join(broken)


def test_the_seam_names_only_streams_models():
    allowed = _seam_allowed(REPO)
    assert allowed and all(m.startswith("streams.") for m in allowed)
    assert not any(_under(m, "streams.pipeline") or _under(m, "streams.cluster") for m in allowed)


# -- the checker itself, on a synthetic tree -------------------------------------------------
SYNTHETIC = {
    "geo/__init__.py": "",
    "geo/pure.py": "import numpy\nfrom geo import crs\n",
    "geo/leaky.py": "def f():\n    import layers.db\n",
    "streams/__init__.py": "",
    "streams/ok.py": "from geo import crs\nfrom . import rules\n",
    "streams/up.py": "from layers import db\n",
    "streams/late.py": "import importlib\n\ndef f():\n    return importlib.import_module('dashboard.app')\n",
    "layers/__init__.py": "",
    "layers/streams_seam.py": (
        "from streams.rules import RedactionRules\n"
        "ALLOWED_STREAMS_MODULES = ('streams.rules', 'streams.floor')\n"
    ),
    "layers/services/__init__.py": "",
    "layers/services/direct.py": "from streams.floor import PrivacyFloor\n",
    "layers/services/through_seam.py": "from layers.streams_seam import RedactionRules\n",
    "layers/services/relative.py": "from ..streams_seam import RedactionRules\nfrom .. import db\n",
    "layers/engine.py": "class X:\n    def f(self):\n        from streams import pipeline\n",
    "layers/up.py": "from dashboard.context import AppContext\n",
    "dashboard/__init__.py": "",
    "dashboard/app.py": "import geo\nimport streams.hub\nfrom layers import db\n",
    "bench/bench_app.py": "from dashboard.app import create_app\n",
    "bench/bench_fixture.py": "from tests.incident_city import build_city\n",
    "tests/test_x.py": "import bench.bench_app\nimport dashboard.app\n",
}


@pytest.fixture
def synthetic(tmp_path) -> Path:
    for rel, text in SYNTHETIC.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checker_finds_each_kind_of_forbidden_import(synthetic):
    found = violations(synthetic)
    assert found == [
        "geo/leaky.py:2: geo.leaky imports layers.db (geo may not import layers)",
        "streams/late.py:4: streams.late imports dashboard.app (streams may not import dashboard)",
        "streams/up.py:1: streams.up imports layers.db (streams may not import layers)",
        "layers/engine.py:3: layers.engine imports streams.pipeline "
        "(layers reaches streams only through layers.streams_seam)",
        "layers/services/direct.py:1: layers.services.direct imports streams.floor.PrivacyFloor "
        "(layers reaches streams only through layers.streams_seam)",
        "layers/up.py:1: layers.up imports dashboard.context.AppContext "
        "(layers may not import dashboard)",
        "bench/bench_fixture.py:1: bench.bench_fixture imports tests.incident_city.build_city "
        "(bench may not import tests)",
    ]


def test_the_seam_may_reach_only_the_modules_it_names(synthetic):
    seam = synthetic / "layers" / "streams_seam.py"
    seam.write_text(seam.read_text() + "from streams.pipeline import RedactionPipeline\n")
    assert [v for v in violations(synthetic) if v.startswith("layers/streams_seam.py")] == [
        "layers/streams_seam.py:3: layers.streams_seam imports "
        "streams.pipeline.RedactionPipeline (layers.streams_seam reaches only streams.rules, "
        "streams.floor)"
    ]


def test_adding_a_forbidden_import_to_a_clean_module_is_caught(synthetic):
    clean = synthetic / "geo" / "pure.py"
    assert not [v for v in violations(synthetic) if v.startswith("geo/pure.py")]
    clean.write_text(clean.read_text() + "\n\ndef later():\n    from streams import hub\n")
    assert [v for v in violations(synthetic) if v.startswith("geo/pure.py")] == [
        "geo/pure.py:6: geo.pure imports streams.hub (geo may not import streams)"
    ]
