"""Spreadsheet-safe export cells: no exported text can run as a formula (CSV injection).

A cell whose text starts with ``=``, ``+``, ``-``, ``@`` is read by Excel, WPS and
LibreOffice as a formula (``=HYPERLINK(...)``, ``@SUM(...)``, DDE ``=cmd|' /C calc'!A0``);
some spreadsheet apps also start DDE from a cell led by ``|`` or ``%``, and a leading tab or
carriage return hides any of them. ``safe_text`` applies defusedcsv's rule (a ``'`` before
a cell led by ``= + - @ | %`` that is not a plain number, and ``|`` escaped as ``\\|`` in
it) and extends it to tab- and CR-led cells, which defusedcsv 3.0 lets through. Every export
path uses it: CSV files through ``csv_writer`` / ``csv_dict_writer`` (defusedcsv underneath,
which then finds nothing left to change), pandas frames through ``safe_frame``, XLSX cells
through ``xlsx_row`` (string cells, never formulas). Numbers stay numbers; number-like text
such as ``-12.5`` or ``1,200`` is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from defusedcsv import csv as defused_csv

#: defusedcsv's formula characters, then the two it lets through
FORMULA_START = ("=", "+", "-", "@", "|", "%", "\t", "\r")
#: defusedcsv's "plain number" exemption, so every export path agrees on every cell
_NUMBER = re.compile(r"^-?[0-9,\.]+$")


def safe_text(value: Any) -> Any:
    """Return ``value`` with a leading ``'`` (and ``|`` escaped) if a spreadsheet would run it."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    if _NUMBER.match(value):
        return value
    return "'" + value.replace("|", "\\|")


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


class _SafeDictWriter:
    """A ``csv.DictWriter`` over ``_SafeWriter``: rows are dicts, every text cell neutralised."""

    def __init__(self, out: IO[str], fieldnames: Sequence[str], **fmtparams: Any) -> None:
        self.fieldnames = list(fieldnames)
        self._writer = _SafeWriter(out, **fmtparams)

    def writeheader(self) -> Any:
        """Return what the underlying writer returns after writing the header row."""
        return self._writer.writerow(self.fieldnames)

    def writerow(self, row: Mapping[str, Any]) -> Any:
        """Return what the underlying writer returns after writing one row (missing: empty).

        Raises
        ------
        ValueError
            If ``row`` names a field that is not a column.
        """
        extra = set(row) - set(self.fieldnames)
        if extra:
            raise ValueError(f"row has fields that are not columns: {sorted(extra)}")
        return self._writer.writerow([row.get(k, "") for k in self.fieldnames])


def csv_dict_writer(out: IO[str], fieldnames: Sequence[str], **fmtparams: Any) -> _SafeDictWriter:
    """Return a dict-row CSV writer for ``out`` that neutralises formula-like text cells."""
    return _SafeDictWriter(out, fieldnames, **fmtparams)


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
