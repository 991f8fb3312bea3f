"""Validators for the official codes GridSight stores.

- GB/T 2260 6-digit administrative division codes (versioned table in ``layers/data``);
- 12-digit statistical codes (county 6 + township 3 + village 3);
- GB/T 30428.1 unit-grid codes (county 6 + street 3 + community 3 + serial 2, or 3);
- GB/T 28181 20-digit device/channel IDs.

Each validator returns the parsed parts or raises ``CodeError`` whose message names the field,
what is wrong and how to fix it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

# Province-level prefixes of GB/T 2260 (stable across editions).
PROVINCE_PREFIXES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82".split()
)

GB28181_INDUSTRY = {
    "00": "社会治安路面", "01": "社会治安社区", "02": "社会治安内部", "03": "社会治安其他",
    "04": "交通路面", "05": "交通卡口", "06": "交通内部", "07": "交通其他",
    "08": "城市管理", "09": "卫生环保", "10": "商检海关", "11": "教育",
}  # fmt: skip
GB28181_CAMERA_TYPES = {"131": "摄像机 camera", "132": "网络摄像机 IP camera"}
GB28181_DEVICE_TYPES = {
    **GB28181_CAMERA_TYPES,
    "111": "DVR", "112": "视频服务器", "113": "编码器", "114": "解码器", "118": "NVR",
    "200": "中心信令控制服务器 SIP server",
}  # fmt: skip


class CodeError(ValueError):
    """A code failed validation; ``field`` names the field, the message says the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@lru_cache(maxsize=4)
def admin_code_table(version: str = "2023") -> dict[str, str]:
    """Return the GB/T 2260 table {6-digit code: name} of the given edition."""
    path = DATA_DIR / f"gbt2260_{version}.json"
    if not path.exists():
        known = sorted(p.stem.split("_", 1)[1] for p in DATA_DIR.glob("gbt2260_*.json"))
        raise CodeError("gbt2260_version", f"edition {version!r} unknown; known: {known}")
    return json.loads(path.read_text(encoding="utf-8"))


def _digits(value: object, n: int | tuple[int, ...], field: str) -> str:
    s = str(value).strip() if value is not None else ""
    lengths = (n,) if isinstance(n, int) else n
    want = " or ".join(str(k) for k in lengths)
    if not s:
        raise CodeError(field, f"is empty; expected {want} digits")
    if not s.isdigit():
        raise CodeError(field, f"{s!r} has non-digit characters; expected {want} digits 0-9")
    if len(s) not in lengths:
        raise CodeError(field, f"{s!r} has {len(s)} digits; expected {want}")
    return s


def validate_admin_code(code: object, field: str = "code", table: dict | None = None) -> str:
    """Return the 6-digit GB/T 2260 code if valid, else raise CodeError.

    With ``table`` the code must appear in it (a specific edition); without, the province
    prefix must be real and the city/county parts well-formed.
    """
    s = _digits(code, 6, field)
    if s[:2] not in PROVINCE_PREFIXES:
        raise CodeError(field, f"{s!r} starts with {s[:2]!r}, which is no province (GB/T 2260)")
    if table is not None and s not in table:
        raise CodeError(field, f"{s!r} is not in the GB/T 2260 table in use; check the edition")
    return s


def validate_stat_code(code: object, field: str = "code") -> str:
    """Return the 12-digit statistical code (county 6 + township 3 + village 3) if valid."""
    s = _digits(code, 12, field)
    validate_admin_code(s[:6], field)
    return s


def validate_street_code(code: object, field: str = "code") -> str:
    """Return the 9-digit street/township code (county 6 + township 3) if valid."""
    s = _digits(code, 9, field)
    validate_admin_code(s[:6], field)
    if s[6:] == "000":
        raise CodeError(field, f"{s!r}: township part 000 is reserved for the county itself")
    return s


@dataclass(frozen=True)
class GridCode:
    county: str
    street: str
    community: str
    serial: str

    @property
    def community_code(self) -> str:
        """Return the 12-digit statistical code of the grid's community."""
        return self.county + self.street + self.community


def validate_grid_code(code: object, field: str = "code") -> GridCode:
    """Return the parts of a GB/T 30428.1 unit-grid code (14 digits, or 15 with a 3-digit serial)."""
    s = _digits(code, (14, 15), field)
    validate_admin_code(s[:6], field)
    serial = s[12:]
    if int(serial) == 0:
        raise CodeError(field, f"{s!r}: serial {serial} is reserved; grids are numbered from 01")
    return GridCode(s[:6], s[6:9], s[9:12], serial)


@dataclass(frozen=True)
class DeviceId:
    centre: str  # 8 digits: GB/T 2260 (6) + basic unit (2)
    civil_code: str  # 6 digits
    industry: str
    type_code: str
    network: str
    serial: str

    @property
    def is_camera(self) -> bool:
        """Return True if the type code is 131 (camera) or 132 (IP camera)."""
        return self.type_code in GB28181_CAMERA_TYPES


def validate_gb28181(
    device_id: object,
    field: str = "gb_id",
    *,
    cameras_only: bool = True,
    region_prefix: str | None = None,
) -> DeviceId:
    """Return the parsed GB/T 28181 20-digit device/channel ID, or raise CodeError.

    ``region_prefix`` (e.g. the deployment's 4-digit city code "5301") must start the ID;
    with ``cameras_only`` the type code must be 131 or 132.
    """
    s = _digits(device_id, 20, field)
    validate_admin_code(s[:6], field)
    if region_prefix and not s.startswith(region_prefix):
        raise CodeError(
            field, f"{s!r} belongs to region {s[:6]}, outside this deployment ({region_prefix}…)"
        )
    industry, type_code, network = s[8:10], s[10:13], s[13]
    if not (industry in GB28181_INDUSTRY or 80 <= int(industry) <= 89 or industry == "90"):
        raise CodeError(field, f"{s!r}: industry code {industry} (digits 9-10) is not defined")
    if cameras_only and type_code not in GB28181_CAMERA_TYPES:
        raise CodeError(
            field,
            f"{s!r}: type code {type_code} (digits 11-13) is not a camera; use 131 or 132",
        )
    if type_code not in GB28181_DEVICE_TYPES and not cameras_only:
        raise CodeError(field, f"{s!r}: type code {type_code} (digits 11-13) is not defined")
    return DeviceId(s[:8], s[:6], industry, type_code, network, s[14:])


_PHONE = re.compile(r"\d")


def mask_phone(phone: str | None) -> str:
    """Return the phone number with all but the first 3 and last 4 digits masked (138****5678)."""
    if not phone:
        return ""
    p = str(phone).strip()
    if len(p) <= 7:
        return "*" * len(p)
    return p[:3] + "*" * (len(p) - 7) + p[-4:]


def mask_name(name: str | None) -> str:
    """Return the name with every character but the first masked (张**)."""
    if not name:
        return ""
    n = str(name).strip()
    return n[:1] + "*" * max(len(n) - 1, 1)
