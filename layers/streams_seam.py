"""The one door from ``layers`` into ``streams``: the models layers stores, checks and wires.

``layers`` owns the database; ``streams`` owns the video engine and the models of what it
runs on (redaction rules, the privacy floor, camera sources and their URL scrubber, the
hub's bindings, the video settings section). Layer services store and serve those models, so they need them, but only
through this module: ``tests/test_architecture.py`` refuses any other ``streams`` import in
``layers``, and any import here of a ``streams`` module outside ``ALLOWED_STREAMS_MODULES``
(the pipeline, detectors and cluster stay out of reach).
"""

from __future__ import annotations

from streams.floor import DEFAULT_FLOOR, FloorError, PrivacyFloor, lowering_reasons
from streams.hub import HubBindings
from streams.rules import SCOPE_PRECEDENCE, RedactionRules, RuleScope, parse_rules
from streams.settings import (
    SettingsError,
    SettingsSection,
    VideoSettings,
    describe_errors,
    json_value,
    known_timezone,
    require_installed,
    setting,
)
from streams.sources import FileSourceConfig, SourceError, redact_url

#: The streams modules this seam may import: models and settings, no engine.
ALLOWED_STREAMS_MODULES = (
    "streams.floor",
    "streams.hub",
    "streams.rules",
    "streams.settings",
    "streams.sources",
)

__all__ = [
    "DEFAULT_FLOOR",
    "SCOPE_PRECEDENCE",
    "FileSourceConfig",
    "FloorError",
    "HubBindings",
    "PrivacyFloor",
    "RedactionRules",
    "RuleScope",
    "SettingsError",
    "SettingsSection",
    "SourceError",
    "VideoSettings",
    "describe_errors",
    "json_value",
    "known_timezone",
    "lowering_reasons",
    "parse_rules",
    "redact_url",
    "require_installed",
    "setting",
]
