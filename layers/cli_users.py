"""``python -m layers users|tokens ...``: provision accounts and API tokens from the shell.

```
python -m layers users add NAME --role ROLE [--password-stdin] [--scopes JSON] [--display-name T]
python -m layers users list | disable NAME | enable NAME | reset NAME
python -m layers users role NAME --role ROLE [--scopes JSON]
python -m layers tokens create NAME --role ROLE | revoke NAME | list
```

Without ``--password-stdin`` a random one-time password is generated and printed once (the
user must change it at first login); tokens are printed once. Only hashes are stored.
The shell on the server is the one place where one person alone may create, enable or give
the role of an admin, auditor or privacy officer (in the app a second admin must approve).
Exit codes: 0 done, 1 the request was refused (message names the field), 2 usage/database.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys

from layers.db import Database, DatabaseError
from layers.models import ROLES
from layers.services import users as user_service
from layers.services.audit import AuditError


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli:unknown"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``users`` and ``tokens`` commands to the ``python -m layers`` parser."""
    db_help = "database URL (default GRIDSIGHT_DB_URL or SQLite)"
    users = sub.add_parser("users", help="add, list, disable user accounts")
    usub = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = usub.add_parser("add", help="create a user (password generated and printed once)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    add.add_argument("--scopes", default=None, help='JSON, e.g. {"districts": ["530102"]}')
    add.add_argument("--display-name", default="")
    usub.add_parser("list", help="list users (never shows password hashes)")
    for action, text in (
        ("disable", "disable an account (its sessions end at once)"),
        ("enable", "re-enable an account (clears a lockout)"),
        ("reset", "give the user a new one-time password (printed once)"),
    ):
        p = usub.add_parser(action, help=text)
        p.add_argument("name")
    role = usub.add_parser("role", help="change a user's role and/or scopes (sessions end)")
    role.add_argument("name")
    role.add_argument("--role", default=None, choices=ROLES)
    role.add_argument("--scopes", default=None, help='JSON, e.g. {"districts": ["530102"]}')
    for p in (users, *usub.choices.values()):
        p.add_argument("--db", default=None, help=db_help)
    users.set_defaults(func=run_users)

    tokens = sub.add_parser("tokens", help="create, revoke, list API tokens")
    tsub = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="create a token (printed once)")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=user_service.TOKEN_ROLES)
    revoke = tsub.add_parser("revoke", help="revoke a token")
    revoke.add_argument("name")
    tsub.add_parser("list", help="list tokens (names, roles, state; never the token)")
    for p in (tokens, *tsub.choices.values()):
        p.add_argument("--db", default=None, help=db_help)
    tokens.set_defaults(func=run_tokens)


def _open(url: str | None) -> Database:
    from layers.__main__ import cli_audit_key, default_db_url

    db = Database(url or default_db_url(), audit_key=cli_audit_key())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter hides the result
    db.migrate()
    return db


def _read_password() -> str:
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def run_users(args: argparse.Namespace) -> int:
    """Return the exit code of a ``users`` command."""
    try:
        db = _open(args.db)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    actor = _actor()
    try:
        with db.session() as s:
            if args.action == "add":
                password = _read_password() if args.password_stdin else None
                if args.password_stdin and not password:
                    print("error: --password-stdin given but stdin was empty", file=sys.stderr)
                    return 1
                user, generated = user_service.create_user(
                    s,
                    args.name,
                    args.role,
                    password,
                    scopes=args.scopes,
                    display_name=args.display_name,
                    actor=actor,
                )
                print(f"created user {user.username} ({user.role})")
                if generated:
                    print(f"one-time password (shown once, change at first login): {generated}")
            elif args.action == "list":
                rows = user_service.list_users(s)
                print(f"{'name':24} {'role':16} {'active':6} {'locked':6} {'chg_pw':6} scopes")
                for u in rows:
                    locked = "yes" if u.locked_until is not None else "no"
                    scopes = json.dumps(user_service.parse_scopes(u.scopes), ensure_ascii=False)
                    print(
                        f"{u.username:24} {u.role:16} {'yes' if u.active else 'no':6} "
                        f"{locked:6} {'yes' if u.must_change_password else 'no':6} {scopes}"
                    )
            elif args.action in ("disable", "enable"):
                user_service.set_active(s, args.name, args.action == "enable", actor=actor)
                print(f"user {args.name} {args.action}d")
            elif args.action == "role":
                if args.role is None and args.scopes is None:
                    print("error: give --role and/or --scopes", file=sys.stderr)
                    return 1
                user = user_service.set_role_and_scopes(
                    s, args.name, role=args.role, scopes=args.scopes, actor=actor
                )
                print(f"user {user.username}: role {user.role}, scopes {user.scopes}")
            elif args.action == "reset":
                new = user_service.generate_password()
                user_service.set_password(s, args.name, new, actor=actor, must_change=True)
                print(f"one-time password for {args.name} (shown once): {new}")
    except (user_service.UserError, AuditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    """Return the exit code of a ``tokens`` command."""
    try:
        db = _open(args.db)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    actor = _actor()
    try:
        with db.session() as s:
            if args.action == "create":
                row, plaintext = user_service.create_token(s, args.name, args.role, actor=actor)
                print(f"created token {row.name} ({row.role}); send it as 'Authorization: Bearer'")
                print(f"token (shown once): {plaintext}")
            elif args.action == "revoke":
                user_service.revoke_token(s, args.name, actor=actor)
                print(f"token {args.name} revoked")
            elif args.action == "list":
                print(f"{'name':24} {'role':16} {'created_by':20} state")
                for t in user_service.list_tokens(s):
                    state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
                    print(f"{t.name:24} {t.role:16} {t.created_by:20} {state}")
    except (user_service.UserError, AuditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
