"""The body parser and the one translation of pydantic's errors into Lantern's."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import InvalidInput, InvalidParams
from service.inputs import MAX_JSON_DEPTH, json_depth_exceeds, loads_json, validation_error


class P(BaseModel):
    model_config = ConfigDict(extra="forbid")

    noise: float = Field(default=0.1, ge=0, le=1)
    finite: float = Field(default=1.0, allow_inf_nan=False)
    n: int = Field(default=1, ge=1)


def _err(data: dict[str, object]) -> ValidationError:
    with pytest.raises(ValidationError) as e:
        P.model_validate(data)
    return e.value


@pytest.mark.parametrize(
    "data",
    [
        {"noise": float("nan")},
        {"noise": float("inf")},
        {"finite": float("-inf")},
        {"noise": "nan"},
        {"finite": "Infinity"},
    ],
)
def test_non_finite_numbers_say_they_must_be_finite(data: dict[str, object]) -> None:
    err = validation_error(
        _err(data), "Invalid params for smoothgrad", "See GET /v1/methods.", InvalidParams
    )
    assert isinstance(err, InvalidParams) and err.code == "invalid_params"
    field = next(iter(data))
    assert err.message == (
        f"Invalid params for smoothgrad at {field}: must be a finite number. See GET /v1/methods."
    )
    assert err.details["errors"][0] == {
        "loc": field,
        "msg": "must be a finite number",
        "type": err.details["errors"][0]["type"],
    }


def test_other_errors_keep_pydantic_s_sentence() -> None:
    err = validation_error(_err({"noise": 2, "n": 0}), "The request is invalid")
    assert isinstance(err, InvalidInput)
    assert (
        err.message == "The request is invalid at noise: Input should be less than or equal to 1."
    )
    assert [e["loc"] for e in err.details["errors"]] == ["noise", "n"]


def test_top_level_errors() -> None:
    with pytest.raises(ValidationError) as e:
        P.model_validate([1])
    err = validation_error(e.value, "The manifest is invalid", "Send an object.")
    assert (
        err.message == "The manifest is invalid: Input should be a valid dictionary or "
        "instance of P. Send an object."
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"a": NaN}', "a"),
        ('{"a": {"b": [1, 2, Infinity]}}', "a.b.2"),
        ('{"a": -Infinity}', "a"),
        ('{"a": 1e999}', "a"),
        ('{"a": [0.5, -1.5e400]}', "a.1"),
        ("NaN", "body"),
    ],
)
def test_loads_json_refuses_non_finite_numbers(text: str, field: str) -> None:
    with pytest.raises(InvalidInput, match="must be a finite number") as e:
        loads_json(text.encode(), "body")
    assert e.value.details["field"] == field
    assert field in e.value.message


def test_loads_json_takes_ordinary_json() -> None:
    assert loads_json(b'{"a": [1, 2.5, -3e10, "NaN", "[[[["], "b": {"c": null}}', "body") == {
        "a": [1, 2.5, -3e10, "NaN", "[[[["],
        "b": {"c": None},
    }


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ("[" * 64 + "]" * 64, False),
        ("[" * 65 + "]" * 65, True),
        ('{"a": ' * 65 + "1" + "}" * 65, True),
        ('["' + "[" * 1000 + '"]', False),
        ('["\\"' + "[" * 1000 + '"]', False),
        ('["\\\\"' + ", [" * 70 + "]" * 70 + "]", True),
        ("[" * 1_000_000, True),
        ('"' + "[" * 1000, False),  # an unterminated string: json.loads says what is wrong
    ],
)
def test_depth_scan(text: str, deep: bool) -> None:
    assert json_depth_exceeds(text.encode(), MAX_JSON_DEPTH) is deep


def test_loads_json_refuses_deep_nesting_and_huge_integers() -> None:
    with pytest.raises(InvalidInput, match="64 levels"):
        loads_json(b"[" * 100_000 + b"]" * 100_000, "body")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        loads_json(b"[" + b"9" * 5000 + b"]", "body")


def test_non_finite_text_elsewhere_keeps_pydantic_s_sentence() -> None:
    class Q(BaseModel):
        name: str = "x"
        kind: Literal["a", "b"] = "a"

    with pytest.raises(ValidationError) as e:
        Q.model_validate({"kind": "nan"})
    assert "finite" not in validation_error(e.value, "The request is invalid").message
    with pytest.raises(ValidationError) as e:
        Q.model_validate({"name": float("nan")})
    assert "finite" not in validation_error(e.value, "The request is invalid").message
