"""The access hooks the video and rules routes ask (``ctx.hooks``, installed by dashboard.auth)."""

from __future__ import annotations

import json
from typing import Any

from dashboard.auth import (
    VIDEO_ROLES,
    Principal,
    camera_allowed,
    current_principal,
    principal_from_user,
    principal_still_valid,
)
from dashboard.context import AccessHooks, AppContext
from layers.services import audit
from layers.services import cameras as camera_service
from layers.services import grants as grant_service
from layers.services import users as user_service
from layers.services.transaction import run


def install_video_hooks(ctx: AppContext) -> None:
    """Install the access hooks the video and rules routes ask into ``ctx.hooks``.

    ``authorize_video`` (role + camera scope), ``authorize_rules`` (read: privacy officer,
    auditor; write: privacy officer), ``unmask_grant`` (watermark text of an active grant, else
    None: redacted), ``unmask_grant_for(username, camera_id)`` (the same without a request
    context, for re-checking a running stream), ``viewer_still_allowed(principal, camera_id)``
    (False once the viewer's session, account or scope is gone: a running stream then ends)
    and ``audit`` (every view, snapshot and rule change into the audit log).
    """
    two_person = ctx.settings.privacy.unmask_requires_second_approver

    def authorize_video(_request, camera_id: int) -> bool:
        p = current_principal()
        if p is None or p.kind != "user" or p.role not in VIDEO_ROLES:
            return False
        try:
            camera = camera_service.get_camera(ctx.db, camera_id)
        except LookupError:  # layers.services.NotFoundError: the route answers 404
            return True
        return camera_allowed(p, camera.gb_id, camera.id)

    def authorize_rules(_request, action: str) -> bool:
        p = current_principal()
        if p is None or p.kind != "user":
            return False
        if action == "read":
            return p.role in ("privacy_officer", "auditor")
        return p.role == "privacy_officer"

    def unmask_grant(_request, camera_id: int) -> str | None:
        p = current_principal()
        if p is None or p.kind != "user" or p.role not in VIDEO_ROLES:
            return None
        grant = run(ctx.db, grant_service.active_grant, p.name, camera_id,
                    require_approval=two_person)  # fmt: skip
        return grant_service.watermark_text(grant) if grant is not None else None

    def unmask_grant_for(username: str, camera_id: int) -> str | None:
        # context-free variant for long-running streams: re-check every few seconds so an
        # unredacted view ends when its grant expires or is revoked
        return run(ctx.db, grant_service.watermark_for, username, camera_id, roles=VIDEO_ROLES,
                   require_approval=two_person)  # fmt: skip

    def viewer_still_allowed(user: Principal | str | None, camera_id: int) -> bool:
        # for running streams: the viewer's session/account still live, camera still in scope
        if isinstance(user, str) or user is None:
            row = run(ctx.db, user_service.get_user, user) if user else None
            user = principal_from_user(row, "basic") if row is not None else None
        if user is None or user.kind != "user" or user.role not in VIDEO_ROLES:
            return False
        if not principal_still_valid(user, ctx):
            return False
        try:
            camera = camera_service.get_camera(ctx.db, camera_id)
        except LookupError:
            return False
        return camera_allowed(user, camera.gb_id, camera.id)

    def audit_hook(event: str, **fields: Any) -> None:
        p = current_principal()
        actor = str(fields.pop("user", None) or (p.actor if p else "unknown"))
        role = p.role if p is not None else ""
        if not role:
            user = run(ctx.db, user_service.get_user, actor)
            role = user.role if user is not None else ""
        camera = fields.get("camera_id")
        target = f"camera:{camera}" if camera is not None else ""
        detail = json.loads(json.dumps(fields, default=str))
        run(ctx.db, audit.record, actor=actor, role=role, action=event[:48], target=target,
            detail=detail)  # fmt: skip

    ctx.hooks = AccessHooks(
        authorize_video=authorize_video,
        authorize_rules=authorize_rules,
        unmask_grant=unmask_grant,
        unmask_grant_for=unmask_grant_for,
        viewer_still_allowed=viewer_still_allowed,
        audit=audit_hook,
    )
