"""Value transforms of the attribute mapping (provisioning/transforms.py)."""

from __future__ import annotations

import pytest

from provisioning.convert.transforms import (
    SpecError,
    ValueProblem,
    chain,
    compile_transform,
    date_parse,
    default,
    value_map,
)

# --- trim / lower / upper -------------------------------------------------------------------


def test_trim_strips_whitespace() -> None:
    trim = compile_transform("trim")
    assert trim("  Alice \t") == "Alice"
    assert trim("Bob") == "Bob"


def test_trim_turns_blank_into_empty() -> None:
    trim = compile_transform("trim")
    assert trim("   ") is None
    assert trim("") is None
    assert trim(None) is None


def test_trim_leaves_non_strings_alone() -> None:
    trim = compile_transform("trim")
    assert trim(True) is True
    assert trim(7) == 7


def test_lower_and_upper() -> None:
    lower = compile_transform("lower")
    upper = compile_transform("upper")
    assert lower("Alice.Smith@Contoso.COM") == "alice.smith@contoso.com"
    assert upper("de") == "DE"
    assert upper("Straße") == "STRASSE"
    assert lower(None) is None
    assert upper(None) is None
    assert lower(False) is False


# --- map ------------------------------------------------------------------------------------


def test_map_replaces_values() -> None:
    status = compile_transform({"map": {"Active": True, "Inactive": False}})
    assert status("Active") is True
    assert status("Inactive") is False


def test_map_is_case_insensitive_by_default() -> None:
    status = compile_transform({"map": {"Active": True, "Inactive": False}})
    assert status("ACTIVE") is True
    assert status("active") is True
    assert status("iNaCtIvE") is False


def test_map_passes_empty_through() -> None:
    status = compile_transform({"map": {"Active": True}})
    assert status(None) is None


def test_map_unknown_value_is_a_value_problem_without_the_value() -> None:
    status = compile_transform({"map": {"Active": True, "Inactive": False}})
    with pytest.raises(ValueProblem) as info:
        status("Sabbatical-Secret-42")
    message = str(info.value)
    assert "Sabbatical-Secret-42" not in message
    assert "sabbatical" not in message.lower()
    # The message names what is allowed so a person can act on it.
    assert "Active" in message and "Inactive" in message


def test_map_default_for_unmapped_values() -> None:
    kind = compile_transform(
        {"map": {"values": {"E": "Employee", "C": "Contractor"}, "default": "Other"}}
    )
    assert kind("e") == "Employee"
    assert kind("C") == "Contractor"
    assert kind("Intern") == "Other"
    # Empty stays empty: the map default is for unmapped values, not missing ones.
    assert kind(None) is None


def test_map_default_may_be_null() -> None:
    kind = compile_transform({"map": {"values": {"E": "Employee"}, "default": None}})
    assert kind("X") is None


def test_map_case_sensitive() -> None:
    code = compile_transform(
        {"map": {"values": {"a": "lower-a", "A": "upper-a"}, "case_sensitive": True}}
    )
    assert code("a") == "lower-a"
    assert code("A") == "upper-a"
    with pytest.raises(ValueProblem):
        code("b")


def test_map_case_sensitive_rejects_other_case() -> None:
    code = compile_transform({"map": {"values": {"Active": True}, "case_sensitive": True}})
    assert code("Active") is True
    with pytest.raises(ValueProblem):
        code("active")


def test_map_keys_differing_only_by_case_need_case_sensitive() -> None:
    with pytest.raises(SpecError, match="case_sensitive"):
        compile_transform({"map": {"a": 1, "A": 2}})


def test_map_non_string_values_are_looked_up_as_text() -> None:
    flag = value_map({"1": True, "0": False})
    assert flag(1) is True
    assert flag("0") is False


# --- date -----------------------------------------------------------------------------------


def test_date_single_format_outputs_iso_date() -> None:
    us = compile_transform({"date": "%m/%d/%Y"})
    assert us("07/10/2010") == "2010-07-10"
    assert us(" 12/31/1999 ") == "1999-12-31"
    assert us(None) is None


def test_date_several_formats_tried_in_order() -> None:
    parse = compile_transform({"date": ["%m/%d/%Y", "%Y-%m-%d", "%d.%m.%Y"]})
    assert parse("03/04/2021") == "2021-03-04"  # month first: the first format wins
    assert parse("2021-04-03") == "2021-04-03"
    assert parse("25.12.2020") == "2020-12-25"


def test_date_unparseable_is_a_value_problem_without_the_value() -> None:
    parse = compile_transform({"date": ["%m/%d/%Y", "%Y-%m-%d"]})
    with pytest.raises(ValueProblem) as info:
        parse("tomorrow-ish")
    assert "tomorrow-ish" not in str(info.value)
    assert "%m/%d/%Y" in str(info.value)


def test_date_output_datetime_is_iso8601_utc_with_z() -> None:
    parse = compile_transform({"date": {"formats": ["%m/%d/%Y"], "output": "datetime"}})
    assert parse("07/10/2010") == "2010-07-10T00:00:00Z"


def test_date_output_datetime_keeps_the_time() -> None:
    parse = compile_transform({"date": {"formats": ["%Y-%m-%d %H:%M"], "output": "datetime"}})
    assert parse("2024-02-29 13:45") == "2024-02-29T13:45:00Z"


def test_date_output_datetime_converts_offsets_to_utc() -> None:
    parse = compile_transform({"date": {"formats": ["%Y-%m-%dT%H:%M:%S%z"], "output": "datetime"}})
    assert parse("2024-01-01T01:30:00+02:00") == "2023-12-31T23:30:00Z"


def test_date_output_date_drops_the_time() -> None:
    parse = compile_transform({"date": {"formats": ["%Y-%m-%d %H:%M"], "output": "date"}})
    assert parse("2024-02-29 13:45") == "2024-02-29"


def test_date_formats_given_as_a_single_string_in_options() -> None:
    parse = compile_transform({"date": {"formats": "%d/%m/%Y"}})
    assert parse("31/01/2022") == "2022-01-31"


def test_date_iso_fast_path() -> None:
    iso = compile_transform({"date": "%Y-%m-%d"})
    assert iso("2020-02-29") == "2020-02-29"
    assert iso("1999-12-31") == "1999-12-31"
    # Not 10 characters: the strptime path still accepts what %Y-%m-%d accepts.
    assert iso("2020-1-5") == "2020-01-05"


@pytest.mark.parametrize(
    "value", ["2020-13-01", "2021-02-29", "2020-00-10", "2020/01/01", "20200101"]
)
def test_date_iso_fast_path_rejects_invalid_dates(value: str) -> None:
    iso = compile_transform({"date": "%Y-%m-%d"})
    with pytest.raises(ValueProblem):
        iso(value)


def test_date_iso_fast_path_rejects_week_dates() -> None:
    # Was a bug: fast path is more permissive than the declared strptime format.
    iso = compile_transform({"date": "%Y-%m-%d"})
    with pytest.raises(ValueProblem):
        iso("2020-W01-1")


def test_date_fast_path_and_strptime_agree_on_datetime_output() -> None:
    iso = date_parse(["%Y-%m-%d"], "datetime")
    assert iso("2013-01-01") == "2013-01-01T00:00:00Z"


# --- default --------------------------------------------------------------------------------


def test_default_fills_empty_values_only() -> None:
    fill = compile_transform({"default": "Employee"})
    assert fill(None) == "Employee"
    assert fill("") == "Employee"
    assert fill("Contractor") == "Contractor"
    assert fill(False) is False


def test_default_function_with_non_string() -> None:
    fill = default(True)
    assert fill(None) is True
    assert fill(False) is False


# --- compile_transform errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("titlecase", "unknown transform 'titlecase'"),
        ({"titlecase": {}}, "unknown transform 'titlecase'"),
        ({"lower": True}, "takes no options"),
        ({"map": {"values": {"a": 1}, "fallback": 2}}, "unknown option"),
        ({"map": "Active=true"}, "expects an object"),
        ({"map": {}}, "table is empty"),
        ({"map": {"values": {}}}, "table is empty"),
        ({"date": "YYYY-MM-DD"}, "no % directive"),
        ({"date": ["%Y-%m-%d", "DD.MM.YYYY"]}, "'DD.MM.YYYY'"),
        ({"date": []}, "at least one input format"),
        ({"date": {"formats": ["%Y"], "output": "epoch"}}, "output must be one of"),
        ({"date": {"formats": ["%Y"], "timezone": "UTC"}}, "unknown option"),
        ({"date": {"output": "date"}}, "'formats' must be a list"),
        ({"date": 5}, "expects a format"),
        ({"lower": None, "upper": None}, "an object with the keys 'lower', 'upper'"),
        (42, "not the value 42"),
        (["lower"], "an object with one key, not a list"),
    ],
)
def test_compile_transform_errors_are_spec_errors(spec: object, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        compile_transform(spec)
    assert fragment in str(info.value)
    assert not any(c in str(info.value) for c in "{}[]")  # words for a person, no reprs


def test_unknown_transform_lists_known_ones() -> None:
    with pytest.raises(SpecError) as info:
        compile_transform("capitalize")
    for known in ("trim", "lower", "upper", "map", "date", "default"):
        assert known in str(info.value)


# --- chain ----------------------------------------------------------------------------------


def test_chain_of_nothing_is_none() -> None:
    assert chain([]) is None


def test_chain_of_one_is_that_transform() -> None:
    lower = compile_transform("lower")
    assert chain([lower]) is lower


def test_chain_applies_in_order() -> None:
    trim_then_map = chain(
        [compile_transform("trim"), compile_transform({"map": {"active": "yes"}})]
    )
    assert trim_then_map is not None
    assert trim_then_map("  Active ") == "yes"

    # The other order fails: map sees the untrimmed value.
    map_then_trim = chain(
        [compile_transform({"map": {"active": "yes"}}), compile_transform("trim")]
    )
    assert map_then_trim is not None
    with pytest.raises(ValueProblem):
        map_then_trim("  Active ")


def test_chain_order_matters_for_case() -> None:
    steps = [
        compile_transform("lower"),
        compile_transform({"map": {"values": {"x": "hit"}, "case_sensitive": True}}),
    ]
    forward = chain(steps)
    assert forward is not None
    assert forward("X") == "hit"
    backward = chain(list(reversed(steps)))
    assert backward is not None
    with pytest.raises(ValueProblem):
        backward("X")


def test_chain_with_default_at_the_end() -> None:
    steps = chain([compile_transform("trim"), compile_transform({"default": "n/a"})])
    assert steps is not None
    assert steps("   ") == "n/a"
    assert steps(" v ") == "v"
