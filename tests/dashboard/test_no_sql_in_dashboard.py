"""dashboard/ holds no SQL: pages and routes reach the data through layers/services only.

Every module under dashboard/ is parsed (not imported) and each import statement checked,
wherever it stands (module level, inside a function, under TYPE_CHECKING): none may import
SQLAlchemy, a database driver or the ORM models (``layers.models``). No call may use the
session / connection API by name (``.session()``, ``.execute()``, ``.scalar()``,
``.scalars()``, ``.query()``): the one way in is ``layers.services.transaction.run(db, service)``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
FORBIDDEN_MODULES = ("sqlalchemy", "sqlite3", "psycopg", "psycopg2", "geoalchemy2", "layers.models")
FORBIDDEN_CALLS = frozenset({"session", "execute", "scalar", "scalars", "query"})


def _forbidden(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in FORBIDDEN_MODULES)


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Return "file:line: what" for every forbidden import or database call in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            out += [f"{filename}:{node.lineno}: import {a.name}" for a in node.names
                    if _forbidden(a.name)]  # fmt: skip
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(_forbidden(n) for n in names):
                out.append(f"{filename}:{node.lineno}: from {node.module} import ...")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in FORBIDDEN_CALLS
        ):
            out.append(f"{filename}:{node.lineno}: .{node.func.attr}(...)")
    return out


def _modules() -> list[Path]:
    return sorted(p for p in DASHBOARD.rglob("*.py") if "vendor" not in p.parts)


def test_the_walk_sees_every_page_and_route():
    names = {p.relative_to(DASHBOARD).as_posix() for p in _modules()}
    assert {"app.py", "auth.py", "pages/dispatch.py", "pages/operator.py", "routes/api.py",
            "routes/ogc.py", "routes/situation_export.py"} <= names  # fmt: skip


def test_no_module_in_dashboard_imports_sqlalchemy_drivers_or_models_or_queries():
    found = []
    for path in _modules():
        found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(DASHBOARD)))
    assert not found, "move these into layers/services:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from sqlalchemy import select",
        "import sqlalchemy.exc",
        "from sqlalchemy.orm import Session",
        "def f():\n    from layers.models import Grid",
        "from layers import models",
        "import sqlite3",
        "with db.session() as s:\n    pass",
        "rows = s.execute(q)",
        "n = s.scalar(q)",
    ],
)
def test_the_checker_catches_each_kind(source):
    assert violations(source)


def test_the_checker_lets_services_and_flask_sessions_through():
    ok = (
        "from layers.services.transaction import run, QueryError\n"
        "from layers.services import cases\n"
        "import flask\n"
        "flask.session['sid'] = 1\n"
        "doc = run(db, cases.case_document, 1, scope=scope, role='x')\n"
    )
    assert violations(ok) == []
