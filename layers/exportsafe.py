"""Spreadsheet-safe export cells: no exported text can run as a formula (CSV injection).

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read
by Excel, WPS and LibreOffice as a formula (``=HYPERLINK(...)``, ``@SUM(...)``, DDE
``=cmd|' /C calc'!A0``). CSV files are written through ``defusedcsv`` (which prefixes such
cells with ``'`` and escapes ``|``) after tab- and CR-led text, which defusedcsv 3.0 lets
through, got the same ``'`` prefix. XLSX cells holding text are stored as string cells,
never formulas, with the same prefix. Numbers stay numbers; number-like text such as
``-12.5`` is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import IO, Any

from defusedcsv import csv as defused_csv

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[-+]?[0-9][0-9,]*(\.[0-9]+)?$")


def safe_text(value: Any) -> Any:
    """Return ``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    if _NUMBER.match(value):
        return value
    return "'" + value


class _SafeWriter:
    """A ``csv.writer`` whose every text cell went through ``safe_text`` and defusedcsv."""

    def __init__(self, out: IO[str], **fmtparams: Any) -> None:
        self._writer = defused_csv.writer(out, **fmtparams)

    def writerow(self, row: Iterable[Any]) -> Any:
        """Return what the underlying writer returns after writing one neutralised row."""
        return self._writer.writerow([safe_text(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Write every row (neutralised)."""
        for row in rows:
            self.writerow(row)


def csv_writer(out: IO[str], **fmtparams: Any) -> _SafeWriter:
    """Return a CSV writer for ``out`` that neutralises formula-like text cells."""
    return _SafeWriter(out, **fmtparams)


def safe_frame(frame: Any) -> Any:
    """Return a copy of a pandas DataFrame whose text cells went through ``safe_text``."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype).startswith(("string", "str")):
            out[col] = out[col].map(safe_text)
    out.columns = [safe_text(str(c)) for c in out.columns]
    return out


def xlsx_row(ws: Any, values: Iterable[Any]) -> None:
    """Append ``values`` to the openpyxl worksheet ``ws``; text is a string cell, never a formula."""
    values = list(values)
    ws.append([None if isinstance(v, str) else v for v in values])
    row = ws.max_row
    for col, v in enumerate(values, start=1):
        if isinstance(v, str):
            cell = ws.cell(row=row, column=col)
            cell.value = safe_text(v)
            cell.data_type = "s"  # openpyxl would store text starting with "=" as a formula
