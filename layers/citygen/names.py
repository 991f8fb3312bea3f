"""Chinese person names, phone numbers and place names for generated (fictional) data.

Names are drawn from common surnames weighted roughly by frequency and a pool of given-name
characters; place names combine characters common in Yunnan place names (甸, 哨, 营, 箐 ...).
Any likeness to real people, numbers or places below the district level is chance.
"""

from __future__ import annotations

import numpy as np

# Common surnames, most frequent first (weights fall off as a power law of the rank).
SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏"
    "魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
    "邵万钱严覃武戴莫孔向汤普"
)
_SURNAME_WEIGHTS = 1.0 / np.arange(1, len(SURNAMES) + 1) ** 0.9
_SURNAME_WEIGHTS /= _SURNAME_WEIGHTS.sum()

GIVEN_CHARS = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国红志文辉鹏云海丹玲燕飞宇浩"
    "婷雪琳晨欣怡子轩梓涵思雨佳俊凯博宏亮春梅成林斌莉倩瑶晓东兴德福荣瑞祥凤琴倩彬松昆滇"
)

MOBILE_PREFIXES = (
    "130 131 132 133 134 135 136 137 138 139 150 151 152 153 155 156 157 158 159 "
    "166 173 177 180 181 182 183 185 186 187 188 189 191 198 199"
).split()

PLACE_FIRST = list(
    "金龙华盘云翠青新东西南北大小长兴福安和平春明德永海宝玉吉祥瑞鸣桃梨松柏杨柳双三五"
)
PLACE_SECOND = list("山湖河泉源桥园坝营庄城门坊苑湾岭峰林堡关冲哨甸箐塘村寨沟坡街铺")


def person_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return ``n`` random Chinese full names (surname + one or two given characters)."""
    surnames = rng.choice(np.array(SURNAMES), size=n, p=_SURNAME_WEIGHTS)
    chars = np.array(GIVEN_CHARS)
    first = rng.choice(chars, size=n)
    second = np.where(rng.random(n) < 0.72, rng.choice(chars, size=n), "")
    return np.char.add(np.char.add(surnames, first), second).astype(object)


def mobile_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return ``n`` random 11-digit mainland mobile numbers ("138" + 8 digits)."""
    prefixes = rng.choice(np.array(MOBILE_PREFIXES), size=n)
    tails = np.char.zfill(rng.integers(0, 10**8, size=n).astype(str), 8)
    return np.char.add(prefixes, tails).astype(object)


def landline_numbers(rng: np.random.Generator, n: int, area_code: str = "0871") -> np.ndarray:
    """Return ``n`` random landline numbers "0871-6xxxxxxx" (Kunming's area code by default)."""
    tails = np.char.zfill(rng.integers(0, 10**7, size=n).astype(str), 7)
    return np.char.add(f"{area_code}-6", tails).astype(object)


def place_names(rng: np.random.Generator, n: int, taken: set[str] | None = None) -> list[str]:
    """Return ``n`` distinct two- or three-character place names not in ``taken``.

    Two-character names come first (a shuffled product of the two pools); once those run out a
    third character is prefixed. ``taken`` is updated with the names returned, so successive
    calls stay distinct across a whole city.
    """
    taken = taken if taken is not None else set()
    out: list[str] = []
    pairs = [a + b for a in PLACE_FIRST for b in PLACE_SECOND if a != b]
    for i in rng.permutation(len(pairs)):
        if len(out) == n:
            return out
        if pairs[i] not in taken:
            out.append(pairs[i])
            taken.add(pairs[i])
    while len(out) < n:
        name = rng.choice(PLACE_FIRST) + pairs[int(rng.integers(len(pairs)))]
        if name not in taken:
            out.append(name)
            taken.add(name)
    return out
