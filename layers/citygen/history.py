"""Incident generator: category mix, sources, priorities, daily rhythm, hotspots, workflow.

Times are int64/float64 seconds since the Unix epoch (UTC); ``NaN`` marks a stage not reached.
The workflow follows GB/T 30428 (collect → register → dispatch → handle → report back →
verify & close → evaluate). Calibration targets from DOMAIN.md: about 93 % of the cases due
by now are closed (结案率) and about 76 % closed on time (按期结案率).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
CATEGORIES_FILE = DATA_DIR / "categories_v1.json"

DAY_S = 86_400
# Relative incident intake per local hour (0-23): quiet nights, a morning peak as offices and
# patrols start, a lunchtime dip, an evening peak.
HOURLY = np.array(
    [0.6, 0.4, 0.3, 0.3, 0.3, 0.5, 1.0, 2.0, 3.6, 4.6, 4.8, 4.3,
     3.2, 3.0, 3.8, 4.2, 4.2, 4.0, 4.0, 4.4, 4.4, 3.6, 2.4, 1.2]
)  # fmt: skip
WEEKDAY = np.array([1.0, 1.0, 1.0, 1.0, 0.97, 0.85, 0.8])  # Monday .. Sunday

# Where reports come from, by default and for categories that deviate.
SOURCE_NAMES = ("patrol", "hotline_12345", "public", "police", "camera", "opinion", "api")
SOURCE_MIX = {
    "": (0.42, 0.28, 0.10, 0.07, 0.08, 0.03, 0.02),
    "SECURITY": (0.35, 0.15, 0.10, 0.30, 0.08, 0.02, 0.00),
    "EMERGENCY": (0.10, 0.35, 0.10, 0.40, 0.05, 0.00, 0.00),
    "CITY": (0.45, 0.20, 0.08, 0.02, 0.20, 0.03, 0.02),
    "DISPUTE": (0.50, 0.30, 0.10, 0.08, 0.00, 0.02, 0.00),
    "SERVICE": (0.30, 0.55, 0.10, 0.00, 0.00, 0.03, 0.02),
}
NO_REPORTER_SOURCES = ("camera", "opinion", "api")

DESCRIPTIONS = {
    "DISPUTE.NEIGHBOR": (
        "邻里因噪音问题发生纠纷",
        "两户居民因楼上漏水产生矛盾",
        "邻里因楼道堆物发生争执",
    ),
    "DISPUTE.FAMILY": ("一户居民家庭矛盾激化，需上门调解", "夫妻因家庭琐事争吵，邻居反映"),
    "DISPUTE.LAND": ("两户村民因宅基地边界发生纠纷", "承包地界址争议，双方互不相让"),
    "DISPUTE.LABOUR": ("工地务工人员反映被拖欠工资", "商户员工讨要工资发生争执"),
    "DISPUTE.PROPERTY": ("业主与物业因收费问题发生纠纷", "电梯长期故障，业主与物业矛盾突出"),
    "DISPUTE.DEMOLITION": ("群众对征地补偿标准有异议",),
    "DISPUTE.MEDICAL": ("患者家属与诊所因诊疗结果发生纠纷",),
    "SECURITY": ("夜间有可疑人员徘徊", "路灯损坏存在治安隐患", "出租屋人员流动频繁需核查"),
    "SAFETY.FIRE": ("楼道堆放杂物堵塞消防通道", "电动车在楼道内充电", "消防栓损坏漏水"),
    "SAFETY.GAS": ("餐馆燃气管道老化有异味", "居民反映闻到燃气味"),
    "SAFETY.WORK": ("小作坊存在安全生产隐患", "施工现场未设安全防护"),
    "ENV": ("垃圾堆放未及时清运", "污水井冒溢", "沟渠漂浮垃圾", "公厕卫生差"),
    "CITY.APPEARANCE": ("墙面乱涂乱画", "绿化带被占用种菜", "建筑立面破损"),
    "CITY.ADS": ("违规设置户外广告牌", "张贴小广告"),
    "CITY.CONSTRUCTION": ("夜间施工噪音扰民", "渣土车沿路遗撒"),
    "CITY.STREET_ORDER": ("占道经营", "流动摊贩聚集", "机动车乱停放堵塞通道"),
    "CITY.EMERGENCY": ("路面塌陷", "树木倒伏阻断交通"),
    "CITY.OTHER": ("井盖缺失", "共享单车乱停放"),
    "SPECIAL_GROUPS": ("独居老人需上门关怀", "社区矫正对象定期走访", "精神障碍患者情绪不稳需关注"),
    "CAMPUS": ("学校周边流动摊贩聚集", "放学时段交通拥堵存在安全隐患"),
    "EMERGENCY": ("发生火情，已报119", "发生交通事故有人员受伤", "暴雨积水严重"),
    "SERVICE": ("居民咨询医保办理", "反映小区停水", "路灯不亮", "老人申请居家养老服务"),
}
SPOTS = ("栋附近", "号楼前", "农贸市场旁", "路口", "公交站旁", "小区门口", "广场", "背街小巷")

# Hotspot themes: a place kind and the categories it draws.
HOTSPOT_THEMES = (
    ("农贸市场", ("CITY.STREET_ORDER", "ENV")),
    ("老旧小区", ("DISPUTE.NEIGHBOR", "SAFETY.FIRE", "DISPUTE.PROPERTY")),
    ("学校周边", ("CAMPUS", "CITY.STREET_ORDER")),
    ("建筑工地", ("CITY.CONSTRUCTION", "DISPUTE.LABOUR", "SAFETY.WORK")),
    ("夜市街区", ("SECURITY", "CITY.STREET_ORDER", "ENV")),
    ("城中村", ("SECURITY", "SAFETY.FIRE", "SAFETY.GAS", "ENV")),
)

STAGES = ("registered", "dispatched", "handling", "reported", "closed", "evaluated")
STAGE_COLUMNS = {
    "registered": "registered_at",
    "dispatched": "dispatched_at",
    "handling": "handled_at",
    "reported": "reported_at",
    "closed": "closed_at",
    "evaluated": "evaluated_at",
}
LEVEL_UP = {"grid": "community", "community": "street", "street": "district", "district": "city"}


@dataclass(frozen=True)
class CategoryDict:
    """What the generators need of a category dictionary (code, owner level, SLA, weight)."""

    version: str
    codes: np.ndarray
    owner_level: np.ndarray
    sla_hours: np.ndarray
    weights: np.ndarray  # relative frequency; 0 for group headings

    @classmethod
    def load(cls, path: Path = CATEGORIES_FILE) -> CategoryDict:
        """Return the dictionary read from a ``categories_v*.json`` file."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        cats = doc["categories"]

        def col(key, default=None):
            return np.array([c.get(key, default) for c in cats], dtype=object)

        return cls(
            version=doc["version"],
            codes=col("code"),
            owner_level=col("owner_level", "grid"),
            sla_hours=np.array([float(c.get("sla_hours", 72)) for c in cats]),
            weights=np.array([float(c.get("weight", 0)) for c in cats]),
        )

    def index(self, code: str) -> int:
        """Return the position of ``code`` (raise KeyError if absent)."""
        hits = np.flatnonzero(self.codes == code)
        if len(hits) == 0:
            raise KeyError(code)
        return int(hits[0])


def sample_categories(
    rng: np.random.Generator, cats: CategoryDict, n: int, bias: np.ndarray | None = None
) -> np.ndarray:
    """Return ``n`` category indices drawn by weight; rows of ``bias`` (n, k) boost categories.

    ``bias`` holds, per incident, a multiplicative factor for every category (1 = no change).
    """
    w = cats.weights
    if bias is None:
        return rng.choice(len(w), size=n, p=w / w.sum())
    p = bias * w[None, :]
    cum = np.cumsum(p, axis=1)
    u = rng.random(n) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), len(w) - 1)


def _group(code: str) -> str:
    return code.split(".", 1)[0]


def sample_sources(rng: np.random.Generator, cats: CategoryDict, cat_idx: np.ndarray) -> np.ndarray:
    """Return the report source of each incident (category-dependent mix)."""
    out = np.empty(len(cat_idx), dtype=object)
    for ci in np.unique(cat_idx):
        sel = cat_idx == ci
        mix = np.array(SOURCE_MIX.get(_group(str(cats.codes[ci])), SOURCE_MIX[""]))
        out[sel] = rng.choice(
            np.array(SOURCE_NAMES, dtype=object), size=int(sel.sum()), p=mix / mix.sum()
        )
    return out


def sample_priorities(
    rng: np.random.Generator, cats: CategoryDict, cat_idx: np.ndarray
) -> np.ndarray:
    """Return priorities 1 (urgent) .. 4 (low): emergencies urgent, safety risks high."""
    codes = cats.codes[cat_idx]
    group = np.array([_group(str(c)) for c in cats.codes])[cat_idx]
    u = rng.random(len(cat_idx))
    pri = np.where(u < 0.8, 3, 4)
    high = np.isin(group, ["SAFETY", "SECURITY", "CAMPUS"]) | np.isin(
        codes, ["DISPUTE.DEMOLITION", "DISPUTE.MEDICAL", "CITY.EMERGENCY"]
    )
    pri = np.where(high, np.where(u < 0.65, 2, 3), pri)
    pri = np.where(group == "EMERGENCY", np.where(u < 0.9, 1, 2), pri)
    return pri.astype(int)


def sample_created(
    rng: np.random.Generator, n: int, now_s: float, days: int = 90, utc_offset_h: int = 8
) -> np.ndarray:
    """Return ``n`` creation times (epoch s) in the ``days`` before ``now_s``, in local rhythm.

    Days are weighted by weekday (quieter weekends) and a slow upward trend; the hour by
    ``HOURLY`` in local time (UTC+8). Nothing lies after ``now_s``.
    """
    off = utc_offset_h * 3600
    today_local = np.floor((now_s + off) / DAY_S) * DAY_S  # local midnight, as epoch s + off
    first = today_local - (days - 1) * DAY_S
    day_start = first + np.arange(days) * DAY_S
    weekday = ((day_start // DAY_S).astype(int) + 3) % 7  # 1970-01-01 was a Thursday
    dw = WEEKDAY[weekday] * np.linspace(0.9, 1.1, days)
    # the last day only counts up to now
    dw[-1] *= HOURLY[: int((now_s + off - today_local) // 3600) + 1].sum() / HOURLY.sum()
    out = np.empty(n)
    todo = np.arange(n)
    while len(todo):
        d = rng.choice(days, size=len(todo), p=dw / dw.sum())
        h = rng.choice(24, size=len(todo), p=HOURLY / HOURLY.sum())
        t = day_start[d] + h * 3600 + rng.random(len(todo)) * 3600 - off
        ok = t <= now_s
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    return np.floor(out)


def workflow(
    rng: np.random.Generator, created_s: np.ndarray, due_s: np.ndarray, now_s: float
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Return (stage times, status, rework count) for incidents created at ``created_s``.

    The time to close is the time allowed (``due_s - created_s``) times a lognormal factor
    (median 0.47, about 20 % late), split into the stages by Dirichlet fractions; 5 % of
    cases stall at some stage and never close. Evaluation follows closing for 80 % of cases.
    Stage times are whole seconds, each at least a minute after the previous one, and every
    stage after ``now_s`` is NaN, so the status is the last stage reached.
    """
    n = len(created_s)
    total = (due_s - created_s) * np.exp(rng.normal(-0.75, 0.9, n))
    total = np.maximum(total, 600.0)
    frac = rng.dirichlet([1.0, 1.5, 2.0, 8.0, 2.5], size=n)
    t = created_s[:, None] + np.cumsum(frac * total[:, None], axis=1)
    t = np.maximum(t, created_s[:, None] + 60.0)
    steps = np.arange(5) * 60.0  # whole seconds, each stage at least a minute after the last
    t = np.maximum.accumulate(np.round(t) - steps, axis=1) + steps
    evaluated = np.round(t[:, 4] + DAY_S * np.exp(rng.normal(0.7, 0.6, n)))
    evaluated[rng.random(n) > 0.8] = np.inf
    times = np.column_stack([t, evaluated])
    stall = rng.random(n) < 0.05
    stall_at = rng.choice(5, size=n, p=[0.05, 0.15, 0.3, 0.3, 0.2])
    times[stall[:, None] & (np.arange(6)[None, :] >= stall_at[:, None])] = np.inf
    times[times > now_s] = np.inf
    reached = np.isfinite(times).sum(axis=1)
    status = np.array(("collected",) + STAGES, dtype=object)[reached]
    times[~np.isfinite(times)] = np.nan
    rework = ((rng.random(n) < 0.04) & (reached >= 4)).astype(int)
    return {STAGE_COLUMNS[s]: times[:, i] for i, s in enumerate(STAGES)}, status, rework


def describe(
    rng: np.random.Generator, cats: CategoryDict, cat_idx: np.ndarray, places: np.ndarray
) -> np.ndarray:
    """Return a short Chinese description per incident: place + spot + what was seen."""
    n = len(cat_idx)
    spot_idx = rng.integers(0, len(SPOTS), n)
    numbered = spot_idx < 2
    nums = rng.integers(1, 30, n).astype(str).astype(object)
    spots = np.array(SPOTS, dtype=object)[spot_idx]
    spots = np.where(numbered, nums + spots, spots)
    what = np.empty(n, dtype=object)
    for ci in np.unique(cat_idx):
        sel = cat_idx == ci
        code = str(cats.codes[ci])
        options = DESCRIPTIONS.get(code) or DESCRIPTIONS.get(_group(code)) or ("发现问题需处置",)
        what[sel] = np.array(options, dtype=object)[rng.integers(0, len(options), int(sel.sum()))]
    return np.asarray(places, dtype=object) + spots + "，" + what


def points_in_polygons(
    rng: np.random.Generator, geoms: np.ndarray, which: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return one point drawn uniformly inside ``geoms[which[i]]`` for every i (vectorised)."""
    shapely.prepare(geoms)
    bounds = shapely.bounds(geoms)
    x = np.empty(len(which))
    y = np.empty(len(which))
    todo = np.arange(len(which))
    while len(todo):
        b = bounds[which[todo]]
        cx = b[:, 0] + rng.random(len(todo)) * (b[:, 2] - b[:, 0])
        cy = b[:, 1] + rng.random(len(todo)) * (b[:, 3] - b[:, 1])
        ok = shapely.contains_xy(geoms[which[todo]], cx, cy)
        x[todo[ok]] = cx[ok]
        y[todo[ok]] = cy[ok]
        todo = todo[~ok]
    return x, y


class WorkingClock:
    """Vectorised working-time arithmetic of a workday calendar over a range of dates.

    ``calendar`` is a ``layers.services.sla.WorkCalendar`` (anything with ``tz``, ``periods``
    and ``is_workday(date)``). Its working windows between ``start_s`` and ``end_s`` (epoch
    seconds) are laid out once; ``add`` then answers "``hours`` working hours after t" for a
    whole array at once, giving what ``WorkCalendar.add_working_hours`` gives one by one.
    """

    def __init__(self, calendar, start_s: float, end_s: float) -> None:
        import datetime as dt

        tz = calendar.tz
        day = dt.datetime.fromtimestamp(start_s, tz).date() - dt.timedelta(days=1)
        last = dt.datetime.fromtimestamp(end_s, tz).date() + dt.timedelta(days=1)
        starts: list[float] = []
        ends: list[float] = []
        while day <= last:
            if calendar.is_workday(day):
                for a, b in calendar.periods:
                    starts.append(dt.datetime.combine(day, a, tz).timestamp())
                    ends.append(dt.datetime.combine(day, b, tz).timestamp())
            day += dt.timedelta(days=1)
        self.start = np.array(starts)
        self.end = np.array(ends)
        length = self.end - self.start
        self.cum_before = np.concatenate([[0.0], np.cumsum(length)[:-1]])
        self.cum_after = self.cum_before + length
        self.covers_until = float(self.end[-1]) if len(self.end) else start_s

    def worked_before(self, t: np.ndarray) -> np.ndarray:
        """Return the working seconds from the table's start up to each time ``t``."""
        k = np.searchsorted(self.start, t, side="right") - 1
        kk = np.maximum(k, 0)
        inside = np.clip(t - self.start[kk], 0.0, self.end[kk] - self.start[kk])
        return np.where(k >= 0, self.cum_before[kk] + inside, 0.0)

    def add(self, t: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """Return the epoch seconds ``hours`` working hours after each ``t``.

        Raises
        ------
        ValueError
            If a result would fall beyond the dates the table was built for.
        """
        t = np.asarray(t, float)
        target = self.worked_before(t) + np.asarray(hours, float) * 3600.0
        j = np.searchsorted(self.cum_after, target, side="left")
        if (j >= len(self.start)).any():
            raise ValueError("WorkingClock: a deadline falls beyond the table; widen end_s")
        out = self.start[j] + (target - self.cum_before[j])
        return np.where(np.asarray(hours) > 0, out, t)
