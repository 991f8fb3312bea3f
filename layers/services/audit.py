"""The append-only, hash-chained audit log: record, search, export; data retention.

Every entry's ``hash`` chains the canonical JSON of its body (seq, ts, actor, role, action,
target, detail) to ``prev_hash``, the previous entry's hash (64 zeros for seq 1): changing,
deleting or reordering any entry breaks the chain from that entry on. How it is hashed lives
in ``audit_chain``; ``verify`` and ``write_anchor`` in ``audit_verify`` (re-exported here).

Truncation (deleting the newest entries) is caught by the **checkpoint**: one row in
``audit_checkpoint`` holding the head, updated in the same transaction as each append.
Without a key, somebody who can write the database can delete the newest entries and move
the checkpoint back, and only an anchor copied off the box (``write_anchor``) shows it.
With the deployment's **audit key** (``audit_key``: an HMAC key in a 0600 file outside the
database, attached to ``Database.audit_key``) every new entry's hash is an HMAC and the head
carries an HMAC seal, so the database alone no longer lets anybody forge a valid head: a
writer holding the key who finds the head moved writes an ``audit.head_mismatch`` entry
(kept by verify as a problem) before its own. A chain written before the key existed is
sealed from its next entry on (``audit.key_enabled``, naming the plain part's head); its
older entries keep their plain SHA-256 hashes and are pinned by the keyed ones after them.
What a key cannot stop is rolling back to a head the attacker saw (and copied) earlier;
anchors catch that.

Concurrent writers are serialised by the checkpoint row: ``record`` first increments its
``seq`` (an UPDATE), which takes SQLite's write lock or PostgreSQL's row lock until the
caller commits, so two appends can never read the same head. A unique ``seq`` stays as a
backstop; if it ever fires ``record`` re-reads the real head and retries.

Audit entries are never purged: the Cybersecurity Law asks for ≥ 6 months of logs and
``purge_personal_data`` (incident reporter data, snapshots) never touches this table.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from layers.db import Database
from layers.exportsafe import csv_dict_writer
from layers.models import AuditCheckpoint, AuditEntry, Incident
from layers.models.base import utcnow
from layers.publish import published_after
from layers.services.audit_chain import (
    CHECKPOINT_ID,
    GENESIS,
    HEAD_MISMATCH,
    KEY_ENABLED,
    AuditError,
    DuplicateKeyError,
    canonical_json,
    chain_hash,
    entry_body,
    head_sealed,
    is_keyed,
    loads_strict,
    ts_text,
)
from layers.services.audit_key import AuditKey, AuditKeyError
from layers.services.audit_verify import Problem, VerifyReport, verify, write_anchor

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditKeyError",
    "Problem",
    "VerifyReport",
    "canonical_json",
    "chain_hash",
    "count",
    "ensure_keyed",
    "entry_body",
    "export_csv",
    "purge_personal_data",
    "record",
    "search",
    "verify",
    "write_anchor",
    "write_csv",
]

log = logging.getLogger(__name__)

# detail keys that would put a secret into a log everybody with the auditor role can read
FORBIDDEN_DETAIL_KEYS = frozenset({"password", "passwd", "token", "secret", "api_key"})
CSV_COLUMNS = ("seq", "ts", "actor", "role", "action", "target", "detail", "prev_hash", "hash")


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
        text = canonical_json(detail)
    except (TypeError, ValueError) as exc:
        raise AuditError(
            f"audit detail is not JSON-serialisable ({exc}); pass str/int/list"
        ) from exc
    try:
        loads_strict(text)  # e.g. {1: ..} and {"1": ..} at one level both become "1"
    except DuplicateKeyError as exc:
        raise AuditError(f"audit detail is ambiguous: {exc}; use distinct text keys") from exc
    return text


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
    passwords or tokens: such keys are refused; nor one whose keys collide as JSON text).
    The entry is keyed with the session's audit key (``session.info["audit_key"]``).

    Raises
    ------
    AuditError
        For a bad field, or a log sealed with a key this process does not hold.
    """
    actor = _check_text(actor, "actor", 64, required=True)
    role = _check_text(role, "role", 32, required=False)
    action = _check_text(action, "action", 48, required=True)
    target = "" if target is None else str(target).strip()
    if len(target) > 128:  # a long target must not make the audited action fail
        target = target[:127] + "…"
    detail_json = _check_detail(detail)
    return _append(session, (actor, role, action, target, detail_json))


def ensure_keyed(db: Database, *, create: bool = True) -> bool:
    """Return True if ``db``'s chain is sealed with ``db.audit_key`` (sealing it if need be).

    With ``create`` the key file is made when it is missing and the log is not yet sealed
    (the app's first start); a sealed log whose key file is missing is never given a new
    key (that would orphan every entry sealed so far): writes then fail naming the file.
    """
    key: AuditKey | None = db.audit_key
    if key is None:
        return False
    with db.session() as s:
        cp = s.get(AuditCheckpoint, CHECKPOINT_ID)
        if cp is None:
            return False
        if is_keyed(cp):
            try:
                return key.key_id == cp.key_id
            except AuditKeyError as exc:
                log.error("the audit log is sealed (key id %s): %s", cp.key_id, exc)
                return False
    if create:
        key.create()
    if not key.exists():
        return False
    with db.session() as s:
        _append(s, None)
    return True


def _append(session: Session, item: tuple[str, str, str, str, str] | None) -> AuditEntry | None:
    """Return the entry for ``item`` (actor, role, action, target, detail JSON) once appended.

    ``None`` appends nothing but the sealing entry, if the chain is to be sealed now.
    """
    key: AuditKey | None = session.info.get("audit_key")
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
        cp = session.get(AuditCheckpoint, CHECKPOINT_ID, populate_existing=True)
        plan = _plan(session, cp, key, item)
        if not plan:
            session.execute(
                update(AuditCheckpoint)
                .where(AuditCheckpoint.id == CHECKPOINT_ID)
                .values(seq=AuditCheckpoint.seq - 1)
            )
            return None
        try:
            with session.begin_nested():
                entry = _write(session, cp, key, plan)
        except IntegrityError:
            log.warning("audit seq taken (attempt %s); re-reading the head", attempt + 1)
            continue
        return entry
    raise AuditError("could not append to the audit log after 5 attempts (seq conflicts)")


def _plan(
    session: Session,
    cp: AuditCheckpoint,
    key: AuditKey | None,
    item: tuple[str, str, str, str, str] | None,
) -> list[tuple[str, str, str, str, str]]:
    """Return the entries to append: tamper mark and sealing entry if due, then ``item``."""
    keyed = is_keyed(cp)
    if keyed:
        if key is None:
            raise AuditError(
                f"the audit log is sealed with an audit key (id {cp.key_id}) and this process "
                "has none: set GRIDSIGHT_AUDIT_KEY_FILE (or --key) to the deployment's key file"
            )
        try:
            key_id = key.key_id
        except AuditKeyError as exc:
            raise AuditError(str(exc)) from exc
        if key_id != cp.key_id:
            raise AuditError(
                f"{key.path} is not the key this audit log is sealed with (key id {key_id}, "
                f"the log's {cp.key_id}); restore the deployment's key file"
            )
    old_seq, old_hash = cp.seq - 1, cp.hash
    real_seq, real_hash = _head(session)
    in_sync = (real_seq, real_hash) == (old_seq, old_hash)
    plan = []
    if keyed and not (in_sync and head_sealed(cp, key, old_seq, old_hash)):
        log.error("audit head moved: checkpoint seq %s, log head seq %s", old_seq, real_seq)
        plan.append(("system", "", HEAD_MISMATCH, "audit_checkpoint", canonical_json({
            "checkpoint_seq": old_seq, "checkpoint_hash": old_hash[:16],
            "log_head_seq": real_seq, "log_head_hash": real_hash[:16],
            "sealed": in_sync and head_sealed(cp, key, old_seq, old_hash),
        })))  # fmt: skip
    elif not in_sync:
        # head out of sync before sealing (e.g. a log older than the checkpoint): follow the
        # real log so the chain stays contiguous; verify() still reports any gap it finds
        log.warning("audit checkpoint (%s) out of sync with log head (%s)", old_seq, real_seq)
    if not keyed and key is not None and key.exists():
        plan.append(("system", "", KEY_ENABLED, "audit_checkpoint", canonical_json({
            "key_id": key.key_id, "plain_entries": real_seq, "plain_head": real_hash,
            "key_created_here": key.created,
        })))  # fmt: skip
    if item is not None:
        plan.append(item)
    return plan


def _write(
    session: Session,
    cp: AuditCheckpoint,
    key: AuditKey | None,
    plan: list[tuple[str, str, str, str, str]],
) -> AuditEntry:
    """Return the last of the planned entries after adding them and moving the head."""
    seq, prev_hash = _head(session)
    key_from = cp.key_from_seq
    entry = None
    for actor, role, action, target, detail_json in plan:
        seq += 1
        if action == KEY_ENABLED:
            key_from = seq
        entry = AuditEntry(seq=seq, ts=utcnow(), actor=actor, role=role, action=action,
                           target=target, detail=detail_json, prev_hash=prev_hash)  # fmt: skip
        keyed = key_from is not None and seq >= key_from
        entry.hash = chain_hash(prev_hash, entry_body(entry), key if keyed else None)
        session.add(entry)
        prev_hash = entry.hash
    values = {"seq": seq, "hash": entry.hash, "updated_at": entry.ts}
    if key_from is not None:
        values.update(key_id=key.key_id, key_from_seq=key_from,
                      mac=key.head_mac(seq, entry.hash, key_from))  # fmt: skip
    session.flush()
    session.execute(
        update(AuditCheckpoint).where(AuditCheckpoint.id == CHECKPOINT_ID).values(**values)
    )
    return entry


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
        "ts": ts_text(entry.ts),
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
    # every text cell is neutralised like the other exports (``layers.exportsafe``)
    writer = csv_dict_writer(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    n = 0
    for e in entries:
        writer.writerow(entry_row(e))
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
    the row count, before the file appears: it is written to a staging file, the record is
    committed, and only then is the file renamed into place (``layers.publish``). When the
    record cannot be written (e.g. a sealed log and no key) no file is left.
    """
    filters = dict(filters or {})
    with contextlib.ExitStack() as stack:
        staged = stack.enter_context(published_after(path)) if path is not None else None
        with db.session() as s:
            entries = search(s, limit=None, **filters)
            entries.reverse()
            buf = io.StringIO()
            n = write_csv(entries, buf)
            text = buf.getvalue()
            if staged is not None:
                # UTF-8 with BOM: Excel (the usual viewer in a command center) then shows Chinese
                staged.write_bytes(text.encode("utf-8-sig"))
            record(
                s,
                actor=actor,
                role=role,
                action="audit.export",
                target=str(path or "download")[:128],
                detail={"rows": n, "filters": {k: str(v) for k, v in filters.items() if v}},
            )
        # committed: leaving the stack publishes the file
    return n, text


def count(db: Database) -> int:
    """Return the number of audit entries."""
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(AuditEntry)) or 0


# -- retention --------------------------------------------------------------------------------
@dataclass
class PurgeReport:
    """What ``purge_personal_data`` blanked or deleted."""

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
                "cutoff": ts_text(cutoff),
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
