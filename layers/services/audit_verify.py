"""Verify the audit chain (``python -m layers audit verify``) and anchor its head off the box.

``verify`` reads every entry in seq order and reports each defect with the first seq it shows
at: seq gaps and repeats, broken ``prev_hash`` links, hashes that do not match the body
(plain SHA-256 before the chain was keyed, HMAC under the audit key after), ``detail`` JSON
that names a key twice, a head row that disagrees with the log or whose HMAC does not seal
it, and the tamper marks writers leave in the chain when they find the head moved. With an
anchor file (``write_anchor``) the anchored entry must also be present, unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.db import Database
from layers.models import AuditCheckpoint, AuditEntry
from layers.models.base import utcnow
from layers.services.audit_chain import (
    CHECKPOINT_ID,
    GENESIS,
    HEAD_MISMATCH,
    KEY_ENABLED,
    AuditError,
    DuplicateKeyError,
    chain_hash,
    entry_body,
    head_sealed,
    is_keyed,
    loads_strict,
    ts_text,
)
from layers.services.audit_key import AuditKey, AuditKeyError


@dataclass
class Problem:
    """One defect of the chain: the first seq it shows at, its kind and an explanation."""

    seq: int
    kind: str  # edited | deleted | reordered | truncated | anchor | key
    message: str


@dataclass
class VerifyReport:
    """The verdict of ``verify``: whether the chain is intact, and every problem found."""

    count: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    #: facts an auditor should know that are not defects (e.g. where keying began)
    notes: list[str] = field(default_factory=list)
    #: first keyed seq (None: the chain is not sealed with a key)
    keyed_from: int | None = None

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
            sealed = (
                f", sealed with the audit key from seq {self.keyed_from}"
                if self.keyed_from is not None
                else ", NOT sealed with a key (truncation is caught only with --anchor)"
            )
            return f"audit log intact: {self.count} entries, head seq {self.last_seq}{sealed}"
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


class _Walk:
    """The running state of one pass over the chain."""

    def __init__(
        self,
        report: VerifyReport,
        cp: AuditCheckpoint | None,
        key: AuditKey | None,
        spare_key: AuditKey | None = None,
    ):
        self.report = report
        self.prev_hash = GENESIS
        self.expected_seq = 1
        self.seen: set[str] = set()
        self.key_from = cp.key_from_seq if is_keyed(cp) else None
        self.key = key
        #: the given key while the head row does not say the log is sealed: the chain's own
        #: sealing entry, if its keyed hash checks out, says from where it is keyed
        self.spare_key = spare_key if self.key_from is None else None
        self.anchored_hash: str | None = None

    def problem(self, seq: int, kind: str, message: str) -> None:
        self.report.problems.append(Problem(seq, kind, message))

    def check(self, e: AuditEntry) -> None:
        self.report.count += 1
        if self.spare_key is not None and e.action == KEY_ENABLED:
            self._keyed_from_the_chain(e)
        self._check_order(e)
        self._check_hash(e)
        self._check_detail(e)
        if e.action == HEAD_MISMATCH:
            self.problem(e.seq, "truncated", f"a writer found the head moved: {e.detail}")
        elif e.action == KEY_ENABLED:
            self._note_keying(e)
        self.seen.add(e.hash)
        self.prev_hash = e.hash
        self.expected_seq = max(self.expected_seq, e.seq + 1)
        self.report.last_seq, self.report.last_hash = e.seq, e.hash

    def _keyed_from_the_chain(self, e: AuditEntry) -> None:
        try:
            key_id = json.loads(e.detail or "{}").get("key_id")
        except (json.JSONDecodeError, AttributeError):
            return
        if key_id == self.spare_key.key_id:
            self.key_from, self.key, self.spare_key = e.seq, self.spare_key, None
            self.report.keyed_from = e.seq

    def _check_order(self, e: AuditEntry) -> None:
        if e.seq > self.expected_seq:
            self.problem(
                self.expected_seq,
                "deleted",
                f"entries {self.expected_seq}..{e.seq - 1} are missing",
            )
        elif e.seq < self.expected_seq:
            self.problem(
                e.seq, "reordered", f"seq {e.seq} appears again after {self.expected_seq - 1}"
            )
        if e.prev_hash != self.prev_hash:
            if e.prev_hash in self.seen:
                kind = "reordered"
            elif e.seq > self.expected_seq:
                kind = "deleted"
            else:
                kind = "edited"
            self.problem(
                e.seq,
                kind,
                f"prev_hash {e.prev_hash[:12]}… does not match the hash of the entry before it "
                f"({self.prev_hash[:12]}…)",
            )

    def _check_hash(self, e: AuditEntry) -> None:
        keyed = self.key_from is not None and e.seq >= self.key_from
        if keyed and self.key is None:
            return  # reported once, by verify(), for the whole keyed part
        if chain_hash(e.prev_hash, entry_body(e), self.key if keyed else None) != e.hash:
            self.problem(e.seq, "edited", "stored hash does not match the entry's contents")

    def _check_detail(self, e: AuditEntry) -> None:
        try:
            loads_strict(e.detail or "{}")
        except DuplicateKeyError as exc:
            self.problem(e.seq, "edited", f"detail JSON is ambiguous: {exc}")
        except json.JSONDecodeError:
            self.problem(e.seq, "edited", "detail is not JSON")

    def _note_keying(self, e: AuditEntry) -> None:
        try:
            detail = json.loads(e.detail or "{}")
        except json.JSONDecodeError:
            detail = {}
        if e.seq != self.key_from:
            self.problem(
                e.seq, "key", f"keying starts again at seq {e.seq} (the head says {self.key_from})"
            )
        elif e.seq > 1 and not detail.get("key_created_here"):
            self.report.notes.append(
                f"sealing began at seq {e.seq}, over {e.seq - 1} older entries, with a key file "
                "that existed before: expected if the key was provisioned by hand; otherwise "
                "the older entries may have been rewritten before sealing"
            )
        elif not detail.get("key_created_here"):
            self.report.notes.append(
                "sealing began at seq 1 with a key file that existed before: expected if the "
                "key was provisioned by hand; otherwise an earlier sealed log may have been "
                "deleted and the app sealed a new one (an anchor from `audit anchor` shows it)"
            )


def verify(
    db: Database, *, anchor: Path | str | None = None, key: AuditKey | None = None
) -> VerifyReport:
    """Return a report on the whole chain: edited, deleted, reordered or truncated entries.

    Checks, entry by entry in seq order: seq numbers are 1, 2, 3 ... without gaps or
    duplicates; each ``prev_hash`` equals the previous entry's hash; each hash matches its
    recomputed body (keyed entries with ``key``, default ``db.audit_key``); no ``detail``
    repeats a key. Then the log must end at the checkpoint head, sealed by its HMAC when the
    chain is keyed, and, with ``anchor`` (a file written by ``write_anchor``), contain the
    anchored entry unchanged.
    """
    given = key if key is not None else db.audit_key
    report = VerifyReport()
    anchor_doc = _read_anchor(anchor) if anchor is not None else None
    with db.session() as s:
        cp = s.get(AuditCheckpoint, CHECKPOINT_ID)
        key = _usable_key(report, cp, given)
        walk = _Walk(report, cp, key, _existing(given))
        for e in _iter_entries(s):
            walk.check(e)
            if anchor_doc is not None and e.seq == anchor_doc["seq"]:
                walk.anchored_hash = e.hash
    _check_head(report, cp, key)
    if cp is not None and not is_keyed(cp) and given is not None and given.exists():
        _unsealed_with_a_key(report, given)
    if anchor_doc is not None:
        _check_anchor(report, anchor_doc, walk.anchored_hash)
    return report


def _existing(key: AuditKey | None) -> AuditKey | None:
    """Return ``key`` if its file exists and holds a key, else None."""
    if key is None or not key.exists():
        return None
    try:
        key.secret()
    except AuditKeyError:
        return None
    return key


def _unsealed_with_a_key(report: VerifyReport, key: AuditKey) -> None:
    """Report a log that is not sealed although its key file exists (emptied or stripped).

    The app seals the log in the same start that creates the key, so with the key file
    present an unsealed head, empty or not, means the sealed entries were deleted and the
    head row rewritten by someone without the key.
    """
    empty = report.count == 0
    what = "empty" if empty else f"{report.count} entries, head seq {report.last_seq}"
    report.problems.append(
        Problem(report.last_seq + 1, "truncated" if empty else "key", f"the audit key {key.path} exists but the "
                f"log ({what}) is not sealed with it: sealed entries were deleted together "
                "with the head's seal, or the seal was stripped (a key made by hand for a "
                "database the app has not started on since: start the app once, verify again)")
    )  # fmt: skip


def _usable_key(report: VerifyReport, cp: AuditCheckpoint | None, key: AuditKey | None):
    """Return the key to check keyed entries with (None: none usable, reported)."""
    if not is_keyed(cp):
        return None
    report.keyed_from = cp.key_from_seq
    if key is None:
        report.problems.append(
            Problem(cp.key_from_seq, "key", "the log is sealed with an audit key from this seq "
                    "on, and none was given: pass --key FILE (or GRIDSIGHT_AUDIT_KEY_FILE)")
        )  # fmt: skip
        return None
    try:
        key_id = key.key_id
    except AuditKeyError as exc:
        report.problems.append(Problem(cp.key_from_seq, "key", str(exc)))
        return None
    if key_id != cp.key_id:
        report.problems.append(
            Problem(cp.key_from_seq, "key", f"{key.path} is not the key this log is sealed "
                    f"with (key id {key_id}, the log's {cp.key_id})")
        )  # fmt: skip
        return None
    return key


def _check_head(report: VerifyReport, cp: AuditCheckpoint | None, key: AuditKey | None) -> None:
    if cp is None:
        report.problems.append(
            Problem(report.last_seq + 1, "truncated", "the audit_checkpoint row is missing")
        )
        return
    if cp.seq != report.last_seq or cp.hash != report.last_hash:
        if cp.seq > report.last_seq:
            report.problems.append(
                Problem(report.last_seq + 1, "truncated", f"the checkpoint records {cp.seq} "
                        f"entries but the log ends at seq {report.last_seq}")
            )  # fmt: skip
        else:
            report.problems.append(
                Problem(min(cp.seq + 1, report.last_seq) or 1, "edited",
                        f"the log head (seq {report.last_seq}) does not match the checkpoint "
                        f"(seq {cp.seq}, hash {cp.hash[:12]}…)")
            )  # fmt: skip
        return
    if key is not None and not head_sealed(cp, key, cp.seq, cp.hash):
        report.problems.append(
            Problem(cp.seq, "truncated", "the head's HMAC does not seal it: the newest entries "
                    "were deleted (or the head moved) by someone without the audit key")
        )  # fmt: skip


def _check_anchor(report: VerifyReport, anchor_doc: dict, got: str | None) -> None:
    if got is None:
        report.problems.append(
            Problem(anchor_doc["seq"], "truncated",
                    f"the anchored entry seq {anchor_doc['seq']} is no longer in the log")
        )  # fmt: skip
    elif got != anchor_doc["hash"]:
        report.problems.append(
            Problem(anchor_doc["seq"], "anchor", "the anchored entry's hash has changed")
        )


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
        row = s.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        ).first()
    seq, head_hash = (row[0], row[1]) if row else (0, GENESIS)
    doc = {"seq": seq, "hash": head_hash, "written_at": ts_text(utcnow())}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return doc
