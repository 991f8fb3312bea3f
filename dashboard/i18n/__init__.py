"""Message catalogs: every UI label comes from ``zh.json`` / ``en.json`` by key."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LANGUAGES = ("zh", "en")
_DIR = Path(__file__).resolve().parent


@cache
def catalog(lang: str) -> dict[str, str]:
    """Return the message catalog of ``lang`` (falls back to Chinese for unknown languages)."""
    if lang not in LANGUAGES:
        lang = "zh"
    return json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def t(key: str, lang: str = "zh", **fmt) -> str:
    """Return the label ``key`` in ``lang``; a missing key shows as ``[key]`` so it is noticed."""
    text = catalog(lang).get(key)
    if text is None:
        text = catalog("zh").get(key, f"[{key}]")
    return text.format(**fmt) if fmt else text
