"""SQLAlchemy models of every GridSight layer (one module per family, one metadata)."""

from layers.models.access import SOD_ROLES, RoleRequest, UserSession
from layers.models.base import Base, PolygonMixin, geometry_columns, utcnow
from layers.models.geo_layers import (
    ADMIN_LEVELS,
    CAMERA_STATUSES,
    CENTER_LEVELS,
    VERSIONED_COLUMNS,
    AdminArea,
    Camera,
    Center,
    Grid,
    LayerVersion,
    Responder,
)
from layers.models.incidents import (
    INCIDENT_STATUSES,
    SOURCES,
    Category,
    IdempotencyKey,
    Incident,
    IncidentEvent,
)
from layers.models.security import (
    ROLES,
    ApiToken,
    AuditCheckpoint,
    AuditEntry,
    RedactionRule,
    RuleChange,
    UnmaskGrant,
    User,
)

__all__ = [
    "ADMIN_LEVELS",
    "CAMERA_STATUSES",
    "CENTER_LEVELS",
    "INCIDENT_STATUSES",
    "ROLES",
    "SOD_ROLES",
    "SOURCES",
    "VERSIONED_COLUMNS",
    "AdminArea",
    "ApiToken",
    "AuditCheckpoint",
    "AuditEntry",
    "Base",
    "Camera",
    "Category",
    "Center",
    "Grid",
    "IdempotencyKey",
    "Incident",
    "IncidentEvent",
    "LayerVersion",
    "PolygonMixin",
    "RedactionRule",
    "Responder",
    "RoleRequest",
    "RuleChange",
    "UnmaskGrant",
    "User",
    "UserSession",
    "geometry_columns",
    "utcnow",
]
