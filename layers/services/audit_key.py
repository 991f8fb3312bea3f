"""The audit chain's secret: an HMAC key in a file outside the database.

With the key, each new audit entry's hash is HMAC-SHA256 over the previous hash and its body,
and the chain head (``audit_checkpoint``) carries an HMAC of (seq, hash, first keyed seq).
Somebody who can rewrite the database but cannot read this file can then neither edit an
entry nor move the head back after deleting the newest entries: they cannot compute either
HMAC. The file is 64 hex characters, created mode 0600 by the app on its first start (never
by the CLI) next to the data folder, not inside it, so a copy of the data folder (the SQLite
file, snapshots) does not carry the key. Lose it and the chain can no longer be verified:
back it up apart from the database.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

KEY_HEX_CHARS = 64
KEY_SUFFIX = ".audit-key"


class AuditKeyError(ValueError):
    """The audit key is missing, unreadable or not the one the log was sealed with."""


def default_key_path(data_dir: Path | str) -> Path:
    """Return ``<data_dir>.audit-key``: a file beside the data folder (``data`` -> ``data.audit-key``)."""
    folder = Path(data_dir).expanduser().resolve()
    if not folder.name:  # the file system root has no name to put a file beside
        return folder / f"gridsight{KEY_SUFFIX}"
    return folder.with_name(folder.name + KEY_SUFFIX)


class AuditKey:
    """The HMAC key of one deployment's audit chain, read from (or created in) one file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._key: bytes | None = None
        #: True once this object created the file (the sealing entry says so)
        self.created = False

    def __repr__(self) -> str:  # never the key itself
        return f"AuditKey({str(self.path)!r})"

    def exists(self) -> bool:
        """Return True if the key file is there."""
        return self.path.exists()

    def create(self) -> bool:
        """Return True if this call created the key file (False: it existed already).

        Several workers may start at once: the key goes to a private temporary file that is
        hard-linked into place, which fails for all but the first, so everybody reads one
        complete key.
        """
        if self.path.exists():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_hex(KEY_HEX_CHARS // 2) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)
            created = True
        except FileExistsError:
            created = False
        finally:
            tmp.unlink()
        self.created = created
        if created:
            log.warning(
                "created the audit key %s (mode 0600): back it up apart from the database",
                self.path,
            )
        return created

    def secret(self) -> bytes:
        """Return the key bytes (read once).

        Raises
        ------
        AuditKeyError
            If the file is missing or does not hold 64 hex characters.
        """
        if self._key is None:
            try:
                text = self.path.read_text(encoding="ascii").strip()
                mode = self.path.stat().st_mode
            except FileNotFoundError as exc:
                raise AuditKeyError(
                    f"the audit key file {self.path} is missing; restore it from its backup "
                    "(GRIDSIGHT_AUDIT_KEY_FILE / --key point elsewhere)"
                ) from exc
            except (OSError, UnicodeDecodeError) as exc:
                raise AuditKeyError(f"cannot read the audit key file {self.path}: {exc}") from exc
            if len(text) != KEY_HEX_CHARS or any(c not in "0123456789abcdef" for c in text):
                raise AuditKeyError(
                    f"{self.path} does not hold an audit key ({KEY_HEX_CHARS} hex characters)"
                )
            if mode & 0o077:
                log.warning(
                    "audit key %s is readable by others (mode %o); chmod 600 it",
                    self.path,
                    mode & 0o777,
                )
            self._key = bytes.fromhex(text)
        return self._key

    @property
    def key_id(self) -> str:
        """Return a public 16-hex-character id of the key (stored in the database)."""
        return self._mac("gridsight-audit-key-id")[:16]

    def entry_hash(self, prev_hash: str, body_json: str) -> str:
        """Return the keyed hash chaining an entry's canonical body to ``prev_hash``."""
        return self._mac(prev_hash + "\n" + body_json)

    def head_mac(self, seq: int, head_hash: str, key_from_seq: int) -> str:
        """Return the HMAC sealing the chain head (seq, hash) and where keying began."""
        return self._mac(f"gridsight-audit-head\n{int(seq)}\n{head_hash}\n{int(key_from_seq)}")

    def _mac(self, text: str) -> str:
        # hmac.digest: the one-shot C path (verify runs it once per keyed entry)
        return hmac.digest(self.secret(), text.encode("utf-8"), "sha256").hex()
