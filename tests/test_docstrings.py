"""House rules for the text of the code: class docstrings say what the class is, and no
issue numbers in code, comments, docstrings or the benchmark results' headings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("geo", "layers", "streams", "dashboard", "bench", "tests")
ISSUE_REF = re.compile(r"\bissues? #?\d+\b|\(issue\b", re.IGNORECASE)


def _python_files():
    for room in ROOMS:
        yield from sorted((ROOT / room).rglob("*.py"))


def test_class_docstrings_say_what_the_class_is():
    """A class docstring starting "Return ..." describes a function, not the class."""
    bad = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            doc = ast.get_docstring(node) if isinstance(node, ast.ClassDef) else None
            if doc and doc.split(maxsplit=1)[0].lower().startswith("return"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {doc[:50]}")
    assert not bad, "say what the class is:\n" + "\n".join(bad)


def test_no_issue_numbers_in_code_or_benchmark_headings():
    bad = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}"
        for path in [*_python_files(), *ROOT.glob("requirements*.txt")]
        if path.name != "test_docstrings.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ISSUE_REF.search(line)
    ]
    results = ROOT / "bench" / "RESULTS.md"
    bad += [
        f"bench/RESULTS.md:{n}: {line}"
        for n, line in enumerate(results.read_text(encoding="utf-8").splitlines(), 1)
        if line.startswith("#") and ISSUE_REF.search(line)
    ]
    assert not bad, "no issue numbers in code, comments or headings:\n" + "\n".join(bad)
