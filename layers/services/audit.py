"""The append-only, hash-chained audit log: record, verify, search, export; data retention.

Every entry's ``hash`` is SHA-256 over ``prev_hash`` + a newline + the canonical JSON of its
body (seq, ts, actor, role, action, target, detail), and ``prev_hash`` is the previous
entry's hash (64 zeros for seq 1). Changing, deleting or reordering any entry breaks the chain
from that entry on.

Truncation (deleting the newest entries, which leaves a shorter but valid chain) is caught by
the **checkpoint**: one row in ``audit_checkpoint`` holding the head (seq, hash), updated in
the same transaction as each append. ``verify`` requires the log to end exactly at the
checkpoint. For protection against someone who can rewrite the whole database, copy the head
out of it: ``write_anchor`` (``python -m layers audit anchor FILE``) saves seq + hash to a file
(cron it to write-once media); ``verify(db, anchor=FILE)`` then requires that entry to be
present unchanged. A chain without a secret key cannot stop an attacker who controls the
database *and* every anchor copy; the anchors are what makes rewriting detectable.

Concurrent writers are serialised by the checkpoint row: ``record`` first increments its
``seq`` (an UPDATE), which takes SQLite's write lock or PostgreSQL's row lock until the
caller commits, so two appends can never read the same head. A unique ``seq`` stays as a
backstop; if it ever fires (a head out of sync with the log) ``record`` re-reads the real head
and retries.

Audit entries are never purged: the Cybersecurity Law asks for ≥ 6 months of logs and
``purge_personal_data`` (incident reporter data, snapshots) never touches this table.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from layers.db import Database
from layers.models import AuditCheckpoint, AuditEntry, Incident
from layers.models.base import utcnow

log = logging.getLogger(__name__)

GENESIS = "0" * 64
CHECKPOINT_ID = 1
# detail keys that would put a secret into a log everybody with the auditor role can read
FORBIDDEN_DETAIL_KEYS = frozenset({"password", "passwd", "token", "secret", "api_key"})
CSV_COLUMNS = ("seq", "ts", "actor", "role", "action", "target", "detail", "prev_hash", "hash")


class AuditError(ValueError):
    """Raised for an audit record that cannot be written; the message names the field."""


# -- hashing ----------------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    """Return ``value`` as canonical JSON (sorted keys, no spaces, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _ts_text(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_body(entry: AuditEntry) -> dict:
    """Return the hashed body of ``entry`` (everything but id, prev_hash and hash)."""
    try:
        detail = json.loads(entry.detail or "{}")
    except json.JSONDecodeError:
        detail = {"__unparseable__": entry.detail}
    return {
        "seq": entry.seq,
        "ts": _ts_text(entry.ts),
        "actor": entry.actor,
        "role": entry.role or "",
        "action": entry.action,
        "target": entry.target or "",
        "detail": detail,
    }


def chain_hash(prev_hash: str, body: dict) -> str:
    """Return the SHA-256 hex digest chaining ``body`` to ``prev_hash``."""
    return hashlib.sha256((prev_hash + "\n" + canonical_json(body)).encode("utf-8")).hexdigest()


# -- append -----------------------------------------------------------------------------------
def _check_text(value: object, name: str, max_len: int, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise AuditError(f"audit {name} must be text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise AuditError(f"audit {name} is empty; pass who/what the entry is about")
    if len(value) > max_len:
        raise AuditError(f"audit {name} is {len(value)} characters; at most {max_len} allowed")
    return value


def _check_detail(detail: dict | None) -> str:
    if detail is None:
        return "{}"
    if not isinstance(detail, dict):
        raise AuditError(f"audit detail must be a dict, got {type(detail).__name__}")
    bad = sorted(k for k in detail if str(k).lower() in FORBIDDEN_DETAIL_KEYS)
    if bad:
        raise AuditError(f"audit detail must not carry secrets (keys {bad}); log names, not values")
    try:
        return canonical_json(detail)
    except (TypeError, ValueError) as exc:
        raise AuditError(
            f"audit detail is not JSON-serialisable ({exc}); pass str/int/list"
        ) from exc


def _head(session: Session) -> tuple[int, str]:
    """Return (seq, hash) of the newest entry actually in the log."""
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def record(
    session: Session,
    *,
    actor: str,
    role: str,
    action: str,
    target: str = "",
    detail: dict | None = None,
) -> AuditEntry:
    """Return the new audit entry appended to the chain inside ``session``'s transaction.

    The entry commits (or rolls back) with the caller's other changes. ``actor`` is a user
    name, ``token:NAME`` or ``cli:OSUSER``; ``action`` a dotted verb such as ``login.ok``,
    ``video.view``, ``user.create``; ``detail`` a small JSON-serialisable dict (never
    passwords or tokens: such keys are refused).
    """
    actor = _check_text(actor, "actor", 64, required=True)
    role = _check_text(role, "role", 32, required=False)
    action = _check_text(action, "action", 48, required=True)
    target = "" if target is None else str(target).strip()
    if len(target) > 128:  # a long target must not make the audited action fail
        target = target[:127] + "…"
    detail_json = _check_detail(detail)
    session.flush()  # the caller's pending writes first: one lock order for everybody
    for attempt in range(5):
        bumped = session.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.id == CHECKPOINT_ID)
            .values(seq=AuditCheckpoint.seq + 1)
        )
        if bumped.rowcount != 1:
            raise AuditError(
                "the audit_checkpoint row is missing; run `python -m layers migrate` "
                "(and `python -m layers audit verify`)"
            )
        seq, prev_hash = session.execute(
            select(AuditCheckpoint.seq, AuditCheckpoint.hash).where(
                AuditCheckpoint.id == CHECKPOINT_ID
            )
        ).one()
        real_seq, real_hash = _head(session)
        if real_seq != seq - 1 or real_hash != prev_hash:
            # head out of sync (e.g. a log written before the checkpoint existed): follow the
            # real log so the chain stays contiguous; verify() still reports any gap it finds
            log.warning("audit checkpoint (%s) out of sync with log head (%s)", seq - 1, real_seq)
            seq, prev_hash = real_seq + 1, real_hash
        entry = AuditEntry(
            seq=seq,
            ts=utcnow(),
            actor=actor,
            role=role,
            action=action,
            target=target,
            detail=detail_json,
            prev_hash=prev_hash,
        )
        entry.hash = chain_hash(prev_hash, entry_body(entry))
        try:
            with session.begin_nested():
                session.add(entry)
                session.execute(
                    update(AuditCheckpoint)
                    .where(AuditCheckpoint.id == CHECKPOINT_ID)
                    .values(seq=seq, hash=entry.hash, updated_at=entry.ts)
                )
        except IntegrityError:
            log.warning("audit seq %s taken (attempt %s); re-reading the head", seq, attempt + 1)
            continue
        return entry
    raise AuditError("could not append to the audit log after 5 attempts (seq conflicts)")


# -- verify -----------------------------------------------------------------------------------
@dataclass
class Problem:
    """One defect of the chain: the first seq it shows at, its kind and an explanation."""

    seq: int
    kind: str  # edited | deleted | reordered | truncated | anchor
    message: str


@dataclass
class VerifyReport:
    """Return-type of ``verify``: whether the chain is intact, and every problem found."""

    count: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return True when no problem was found."""
        return not self.problems

    @property
    def first_broken_seq(self) -> int | None:
        """Return the lowest seq with a problem, or None when intact."""
        return min((p.seq for p in self.problems), default=None)

    def summary(self) -> str:
        """Return a one-paragraph human-readable result."""
        if self.ok:
            return f"audit log intact: {self.count} entries, head seq {self.last_seq}"
        first = min(self.problems, key=lambda p: p.seq)
        return (
            f"audit log BROKEN at seq {first.seq}: {first.kind}: {first.message} "
            f"({len(self.problems)} problem(s), {self.count} entries read)"
        )


def _iter_entries(session: Session) -> Iterator[AuditEntry]:
    stmt = (
        select(AuditEntry).order_by(AuditEntry.seq, AuditEntry.id).execution_options(yield_per=2000)
    )
    yield from session.scalars(stmt)


def verify(db: Database, *, anchor: Path | str | None = None) -> VerifyReport:
    """Return a report on the whole chain: edited, deleted, reordered or truncated entries.

    Checks, entry by entry in seq order: seq numbers are 1, 2, 3 ... without gaps or
    duplicates; each ``prev_hash`` equals the previous entry's hash; each hash matches its
    recomputed body. Then the log must end at the checkpoint head, and, with ``anchor`` (a
    file written by ``write_anchor``), contain the anchored entry unchanged.
    """
    report = VerifyReport()
    prev_hash = GENESIS
    expected_seq = 1
    seen: set[str] = set()
    anchor_doc = _read_anchor(anchor) if anchor is not None else None
    anchored_hash: str | None = None
    with db.session() as s:
        for e in _iter_entries(s):
            report.count += 1
            if e.seq > expected_seq:
                report.problems.append(
                    Problem(
                        expected_seq, "deleted", f"entries {expected_seq}..{e.seq - 1} are missing"
                    )
                )
            elif e.seq < expected_seq:
                report.problems.append(
                    Problem(
                        e.seq, "reordered", f"seq {e.seq} appears again after {expected_seq - 1}"
                    )
                )
            if e.prev_hash != prev_hash:
                if e.prev_hash in seen:
                    kind = "reordered"
                elif e.seq > expected_seq:
                    kind = "deleted"
                else:
                    kind = "edited"
                report.problems.append(
                    Problem(
                        e.seq,
                        kind,
                        f"prev_hash {e.prev_hash[:12]}… does not match the hash of the entry "
                        f"before it ({prev_hash[:12]}…)",
                    )
                )
            if chain_hash(e.prev_hash, entry_body(e)) != e.hash:
                report.problems.append(
                    Problem(e.seq, "edited", "stored hash does not match the entry's contents")
                )
            if anchor_doc is not None and e.seq == anchor_doc["seq"]:
                anchored_hash = e.hash
            seen.add(e.hash)
            prev_hash = e.hash
            expected_seq = max(expected_seq, e.seq + 1)
            report.last_seq, report.last_hash = e.seq, e.hash
        cp = s.get(AuditCheckpoint, CHECKPOINT_ID)
    if cp is None:
        report.problems.append(
            Problem(report.last_seq + 1, "truncated", "the audit_checkpoint row is missing")
        )
    elif cp.seq != report.last_seq or cp.hash != report.last_hash:
        if cp.seq > report.last_seq:
            report.problems.append(
                Problem(
                    report.last_seq + 1,
                    "truncated",
                    f"the checkpoint records {cp.seq} entries but the log ends at seq "
                    f"{report.last_seq}",
                )
            )
        else:
            report.problems.append(
                Problem(
                    min(cp.seq + 1, report.last_seq) or 1,
                    "edited",
                    f"the log head (seq {report.last_seq}) does not match the checkpoint "
                    f"(seq {cp.seq}, hash {cp.hash[:12]}…)",
                )
            )
    if anchor_doc is not None:
        got = anchored_hash
        if got is None:
            report.problems.append(
                Problem(
                    anchor_doc["seq"],
                    "truncated",
                    f"the anchored entry seq {anchor_doc['seq']} is no longer in the log",
                )
            )
        elif got != anchor_doc["hash"]:
            report.problems.append(
                Problem(anchor_doc["seq"], "anchor", "the anchored entry's hash has changed")
            )
    return report


def _read_anchor(path: Path | str) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {"seq": int(doc["seq"]), "hash": str(doc["hash"])}
    except FileNotFoundError as exc:
        raise AuditError(
            f"anchor file {path} does not exist; write it with `audit anchor`"
        ) from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"anchor file {path} is not a seq/hash JSON document ({exc})") from exc


def write_anchor(db: Database, path: Path | str) -> dict:
    """Return the head (seq, hash, ts) after writing it atomically to ``path`` as JSON."""
    with db.session() as s:
        seq, head_hash = _head(s)
    doc = {"seq": seq, "hash": head_hash, "written_at": _ts_text(utcnow())}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return doc


# -- search and export ------------------------------------------------------------------------
def search(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int | None = 500,
    offset: int = 0,
) -> list[AuditEntry]:
    """Return entries matching the filters, newest first.

    ``actor`` matches exactly; ``action`` matches exactly or as a prefix when it ends with
    ``.`` or ``*`` (``login.`` → login.ok, login.failed ...); ``since``/``until`` are aware
    datetimes (inclusive / exclusive).
    """
    stmt = select(AuditEntry)
    if actor:
        stmt = stmt.where(AuditEntry.actor == actor.strip())
    if action:
        action = action.strip()
        if action.endswith(("*", ".")):
            stmt = stmt.where(AuditEntry.action.startswith(action.rstrip("*"), autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == action)
    for value, name in ((since, "since"), (until, "until")):
        if value is not None and value.tzinfo is None:
            raise AuditError(f"audit search {name} must carry a timezone (e.g. +08:00)")
    if since is not None:
        stmt = stmt.where(AuditEntry.ts >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.ts < until)
    stmt = stmt.order_by(AuditEntry.seq.desc()).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def entry_row(entry: AuditEntry) -> dict:
    """Return ``entry`` as a flat dict of strings/ints (CSV columns)."""
    return {
        "seq": entry.seq,
        "ts": _ts_text(entry.ts),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def write_csv(entries: Iterable[AuditEntry], out: IO[str]) -> int:
    """Return the number of entries written to ``out`` as CSV (header + one row each)."""
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    n = 0
    for e in entries:
        row = entry_row(e)
        # a cell starting with = + - @ would run as a formula in a spreadsheet
        for k in ("actor", "target", "detail", "action", "role"):
            if str(row[k]).startswith(("=", "+", "-", "@", "\t", "\r")):
                row[k] = "'" + str(row[k])
        writer.writerow(row)
        n += 1
    return n


def export_csv(
    db: Database,
    path: Path | str | None = None,
    *,
    actor: str,
    role: str,
    filters: dict | None = None,
) -> tuple[int, str]:
    """Return (rows, csv_text) of the log (oldest first), written to ``path`` when given.

    The export itself is audited (``audit.export``) as ``actor``/``role`` with the filters and
    the row count.
    """
    filters = dict(filters or {})
    with db.session() as s:
        entries = search(s, limit=None, **filters)
        entries.reverse()
        buf = io.StringIO()
        n = write_csv(entries, buf)
        text = buf.getvalue()
        if path is not None:
            # UTF-8 with BOM: Excel (the usual viewer in a command center) then shows Chinese
            Path(path).write_bytes(text.encode("utf-8-sig"))
        record(
            s,
            actor=actor,
            role=role,
            action="audit.export",
            target=str(path or "download")[:128],
            detail={"rows": n, "filters": {k: str(v) for k, v in filters.items() if v}},
        )
    return n, text


def count(db: Database) -> int:
    """Return the number of audit entries."""
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(AuditEntry)) or 0


# -- retention --------------------------------------------------------------------------------
@dataclass
class PurgeReport:
    """Return-type of ``purge_personal_data``: what was blanked or deleted."""

    cutoff: dt.datetime
    incidents_blanked: int = 0
    snapshots_deleted: int = 0


SNAPSHOT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".mp4")


def purge_personal_data(
    db: Database,
    *,
    older_than_days: int,
    snapshots_dir: Path | str | None = None,
    actor: str = "system",
    role: str = "",
    now: dt.datetime | None = None,
) -> PurgeReport:
    """Return what was purged: reporter names/phones of old incidents, and old snapshots.

    Incidents created more than ``older_than_days`` days ago get ``reporter_name`` and
    ``reporter_phone`` blanked (the case itself stays for KPIs); image/video files under
    ``snapshots_dir`` last modified before the cutoff are deleted. The audit log is never
    touched. The purge is itself audited (``retention.purge``).
    """
    if not isinstance(older_than_days, int) or older_than_days < 1:
        raise AuditError(
            f"older_than_days must be a whole number of days ≥ 1, got {older_than_days!r}"
        )
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=older_than_days)
    report = PurgeReport(cutoff=cutoff)
    with db.session() as s:
        res = s.execute(
            update(Incident)
            .where(Incident.created_at < cutoff)
            .where((Incident.reporter_name != "") | (Incident.reporter_phone != ""))
            .values(reporter_name="", reporter_phone="")
        )
        report.incidents_blanked = res.rowcount or 0
        if snapshots_dir is not None and Path(snapshots_dir).is_dir():
            limit = cutoff.timestamp()
            for p in Path(snapshots_dir).rglob("*"):
                if p.is_file() and p.suffix.lower() in SNAPSHOT_SUFFIXES:
                    if p.stat().st_mtime < limit:
                        p.unlink()
                        report.snapshots_deleted += 1
        record(
            s,
            actor=actor,
            role=role,
            action="retention.purge",
            target=f"older_than_days={older_than_days}",
            detail={
                "cutoff": _ts_text(cutoff),
                "incidents_blanked": report.incidents_blanked,
                "snapshots_deleted": report.snapshots_deleted,
            },
        )
    log.info(
        "retention purge: %s incidents blanked, %s snapshots deleted (cutoff %s)",
        report.incidents_blanked,
        report.snapshots_deleted,
        cutoff,
    )
    return report
