"""jsonish.py: typed reads of parsed JSON of unknown shape."""

from __future__ import annotations

import json

import pytest

from agent_fleet_mcp.jsonish import as_dict, as_int, as_list, is_object


def test_objects_and_arrays_pass_through_as_the_same_value() -> None:
    obj = json.loads('{"a": [1, {"b": 2}]}')
    assert as_dict(obj) is obj and is_object(obj)
    assert as_list(as_dict(obj)["a"]) is obj["a"]
    assert as_dict(as_list(obj["a"])[1]) == {"b": 2}


@pytest.mark.parametrize("value", [None, "x", 3, 2.5, True, [1], [{"a": 1}]])
def test_anything_else_is_not_an_object(value: object) -> None:
    assert as_dict(value) == {} and not is_object(value)


@pytest.mark.parametrize("value", [None, "x", 3, {"a": 1}, ({"a": 1},)])
def test_anything_else_is_an_empty_array(value: object) -> None:
    assert as_list(value) == []


def test_lookups_chain_through_missing_and_wrong_types() -> None:
    line = json.loads('{"message": {"usage": "oops"}}')
    assert as_dict(as_dict(as_dict(line.get("message")).get("usage"))).get("input_tokens") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), (7.9, 7), (-3, -3), (0, 0), (True, 0), (False, 0), (None, 0), ("12", 0), ([1], 0)],
)
def test_as_int_takes_numbers_only(value: object, expected: int) -> None:
    assert as_int(value) == expected
