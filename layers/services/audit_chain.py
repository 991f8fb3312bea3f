"""How audit entries are hashed and the chain head is sealed (shared by append and verify).

An entry's body is (seq, ts, actor, role, action, target, detail); its ``hash`` chains the
body to ``prev_hash``: plain SHA-256 for entries written before the chain was keyed, and
HMAC-SHA256 under the deployment's audit key (``layers.services.audit_key``) from
``audit_checkpoint.key_from_seq`` on. The head row then also carries ``mac``, an HMAC of
(seq, hash, key_from_seq): without the key nobody can move the head.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from layers.models import AuditCheckpoint, AuditEntry
from layers.services.audit_key import AuditKey

GENESIS = "0" * 64
CHECKPOINT_ID = 1
#: written in the chain by whoever finds the head row disagreeing with the log (tampering)
HEAD_MISMATCH = "audit.head_mismatch"
#: the first keyed entry: from here on the chain is sealed with the audit key
KEY_ENABLED = "audit.key_enabled"


class AuditError(ValueError):
    """Raised for an audit record that cannot be written; the message names the field."""


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (two readers could see two different values)."""


def canonical_json(value: Any) -> str:
    """Return ``value`` as canonical JSON (sorted keys, no spaces, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"key {key!r} appears twice")
        out[key] = value
    return out


def loads_strict(text: str) -> Any:
    """Return parsed JSON, refusing an object that repeats a key.

    Raises
    ------
    DuplicateKeyError
        If any object in ``text`` names a key twice.
    json.JSONDecodeError
        If ``text`` is not JSON.
    """
    return json.loads(text, object_pairs_hook=_no_duplicates)


def ts_text(ts: dt.datetime) -> str:
    """Return a timestamp as the UTC text that is hashed (microseconds, ``Z``)."""
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_body(entry: AuditEntry) -> dict:
    """Return the hashed body of ``entry`` (everything but id, prev_hash and hash)."""
    try:
        detail = json.loads(entry.detail or "{}")
    except json.JSONDecodeError:
        detail = {"__unparseable__": entry.detail}
    return {
        "seq": entry.seq,
        "ts": ts_text(entry.ts),
        "actor": entry.actor,
        "role": entry.role or "",
        "action": entry.action,
        "target": entry.target or "",
        "detail": detail,
    }


def chain_hash(prev_hash: str, body: dict, key: AuditKey | None = None) -> str:
    """Return the hash chaining ``body`` to ``prev_hash``: SHA-256, or HMAC with ``key``."""
    text = canonical_json(body)
    if key is not None:
        return key.entry_hash(prev_hash, text)
    return hashlib.sha256((prev_hash + "\n" + text).encode("utf-8")).hexdigest()


def is_keyed(checkpoint: AuditCheckpoint | None) -> bool:
    """Return True if the chain is sealed with a key (from ``key_from_seq`` on)."""
    return checkpoint is not None and checkpoint.key_id is not None


def head_sealed(checkpoint: AuditCheckpoint, key: AuditKey, seq: int, head_hash: str) -> bool:
    """Return True if ``checkpoint.mac`` seals (seq, head_hash) under ``key``."""
    if checkpoint.mac is None or checkpoint.key_from_seq is None:
        return False
    import hmac

    want = key.head_mac(seq, head_hash, checkpoint.key_from_seq)
    return hmac.compare_digest(want, checkpoint.mac)
