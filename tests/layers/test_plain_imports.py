"""Our own modules are imported plainly: a broken import fails loudly, never silently.

A ``try: import <our module> except ImportError`` turns a bug into skipped work (auditing
that quietly stops, a page left unguarded), and a test that ``importorskip``s one of our
modules would skip in CI instead of failing. Third-party extras may still be guarded.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("geo", "layers", "streams", "dashboard", "bench", "tests")
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _ours(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] in OURS


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type
    names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
    return any(isinstance(n, ast.Name) and n.id in IMPORT_ERRORS for n in names)


def _guarded_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try) or not any(map(_catches_import_error, node.handlers)):
            continue
        for inner in node.body:
            for sub in ast.walk(inner):
                if isinstance(sub, ast.Import):
                    found += [(sub.lineno, a.name) for a in sub.names if _ours(a.name)]
                elif isinstance(sub, ast.ImportFrom) and sub.level == 0 and _ours(sub.module):
                    found.append((sub.lineno, sub.module))
                elif isinstance(sub, ast.ImportFrom) and sub.level > 0:
                    found.append((sub.lineno, "." * sub.level + (sub.module or "")))
    return found


def _importorskips_of_ours(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and _ours(str(node.args[0].value))
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def _python_files():
    for top in OURS:
        yield from sorted((ROOT / top).rglob("*.py"))


def test_no_module_of_ours_is_imported_inside_a_try_that_catches_importerror():
    bad = [
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in _python_files()
        for line, name in _guarded_imports(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not bad, "import our own modules plainly:\n" + "\n".join(bad)


def test_no_test_importorskips_a_module_of_ours():
    bad = [
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in _python_files()
        for line, name in _importorskips_of_ours(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not bad, "a missing module of ours must fail the test, not skip it:\n" + "\n".join(bad)


def test_the_scan_finds_a_guarded_import_of_ours():
    src = "try:\n    from layers.services import audit\nexcept ImportError:\n    audit = None\n"
    assert _guarded_imports(ast.parse(src)) == [(2, "layers.services")]
    third_party = "try:\n    import psycopg\nexcept ImportError:\n    psycopg = None\n"
    assert _guarded_imports(ast.parse(third_party)) == []
    assert _importorskips_of_ours(ast.parse('pytest.importorskip("layers.services.x")'))
