"""What an import reports: per-row issues, counts and the exit code; the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from layers.exportsafe import csv_writer


class UsageError(ValueError):
    """The command cannot run as given (exit code 2); the message names the option and fix."""


class RowError(ValueError):
    """One input row is rejected; the message says why and how to fix it."""


@dataclass
class RowIssue:
    """A rejected, repaired or otherwise noteworthy input row (``row`` counts from 1)."""

    row: int
    code: str
    name: str
    status: str  # "rejected" | "repaired" | "note"
    reason: str

    def line(self) -> str:
        """Return the issue as one report line."""
        ident = ", ".join(v for v in (self.code, self.name) if v)
        return f"row {self.row}{f' ({ident})' if ident else ''}: {self.status}: {self.reason}"


@dataclass
class ImportReport:
    """The outcome of one ``import_layer`` run: counts, per-row issues and general notes."""

    layer: str
    path: str
    source_crs: str
    total: int = 0
    imported: int = 0
    issues: list[RowIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[RowIssue]:
        """Return the rejected rows."""
        return [i for i in self.issues if i.status == "rejected"]

    @property
    def repaired(self) -> list[RowIssue]:
        """Return the rows stored after a geometry repair."""
        return [i for i in self.issues if i.status == "repaired"]

    @property
    def exit_code(self) -> int:
        """Return 0 if every row was imported, 1 if some were rejected."""
        return 1 if self.rejected else 0

    def format(self, max_rows: int | None = 200) -> str:
        """Return the human-readable report (at most ``max_rows`` row lines; None: all)."""
        lines = [
            f"{self.layer}: imported {self.imported} of {self.total} rows from {self.path} "
            f"(source CRS {self.source_crs}, stored as WGS-84); {len(self.rejected)} rejected, "
            f"{len(self.repaired)} repaired"
        ]
        lines += [f"  note: {n}" for n in self.notes]
        issues = sorted(self.issues, key=lambda i: (i.status != "rejected", i.row))
        shown = issues if max_rows is None else issues[:max_rows]
        lines += [f"  {i.line()}" for i in sorted(shown, key=lambda i: i.row)]
        if len(shown) < len(issues):
            lines.append(
                f"  ... {len(issues) - len(shown)} more row issues (write them all with --report)"
            )
        return "\n".join(lines)

    def write_csv(self, path: str | Path) -> None:
        """Write the per-row issues as CSV (row, code, name, status, reason), UTF-8 with BOM."""
        with open(path, "w", newline="", encoding="utf-8-sig") as fh:
            writer = csv_writer(fh)  # names and reasons come from the imported file
            writer.writerow(["row", "code", "name", "status", "reason"])
            for i in sorted(self.issues, key=lambda i: i.row):
                writer.writerow([i.row, i.code, i.name, i.status, i.reason])
