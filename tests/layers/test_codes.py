"""Validators for GB/T 2260, 12-digit statistical, unit-grid and GB/T 28181 codes."""

from __future__ import annotations

import pytest

from layers.codes import (
    CodeError,
    admin_code_table,
    mask_name,
    mask_phone,
    validate_admin_code,
    validate_gb28181,
    validate_grid_code,
    validate_stat_code,
)


@pytest.mark.parametrize("code", ["530102", "110101", "820000"])
def test_admin_code_valid(code):
    assert validate_admin_code(code) == code


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("", "empty"),
        ("53010", "5 digits"),
        ("5301O2", "non-digit"),
        ("990102", "no province"),
        (None, "empty"),
    ],
)
def test_admin_code_invalid(code, fragment):
    with pytest.raises(CodeError, match=fragment) as e:
        validate_admin_code(code, field="district_code")
    assert e.value.field == "district_code"


def test_admin_code_editions_differ():
    # 晋宁 changed from county 530122 to district 530115: the edition matters.
    assert "530122" in admin_code_table("2016") and "530122" not in admin_code_table("2023")
    with pytest.raises(CodeError, match="not in the GB/T 2260 table"):
        validate_admin_code("530122", table=admin_code_table("2023"))
    with pytest.raises(CodeError, match="unknown"):
        admin_code_table("1999")


def test_stat_code():
    assert validate_stat_code("320508019044") == "320508019044"
    with pytest.raises(CodeError, match="12"):
        validate_stat_code("32050801904")


@pytest.mark.parametrize("code", ["53010200100101", "530102001001001"])
def test_grid_code_valid(code):
    parts = validate_grid_code(code)
    assert parts.county == "530102" and parts.community_code == code[:12]


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("5301020010010", "13 digits"),
        ("53010200100100", "reserved"),
        ("0001020010010 1", "non-digit"),
    ],
)
def test_grid_code_invalid(code, fragment):
    with pytest.raises(CodeError, match=fragment):
        validate_grid_code(code)


def test_gb28181_valid_and_parsed():
    d = validate_gb28181("53010200001320000123")
    assert d.civil_code == "530102" and d.industry == "00" and d.type_code == "132"
    assert d.network == "0" and d.serial == "000123" and d.is_camera
    validate_gb28181("53010200801310500001", region_prefix="5301")  # 08 城市管理, 131, 公安网


@pytest.mark.parametrize(
    ("code", "kwargs", "fragment"),
    [
        ("5301020000132000012", {}, "19 digits"),
        ("53010200001180000123", {}, "not a camera"),  # 118 = NVR
        ("53010200501320000123", {}, "industry code 50"),
        ("99010200001320000123", {}, "no province"),
        ("11010200001320000123", {"region_prefix": "5301"}, "outside this deployment"),
        ("5301020000132000012X", {}, "non-digit"),
    ],
)
def test_gb28181_invalid(code, kwargs, fragment):
    with pytest.raises(CodeError, match=fragment):
        validate_gb28181(code, **kwargs)


def test_masking():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("") == ""
    assert mask_name("张三丰") == "张**"
    assert mask_name("李") == "李*"
