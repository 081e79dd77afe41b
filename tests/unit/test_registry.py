"""Job types: registry look-ups, input validation, stages (DESIGN §6)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from rhizome.errors import InvalidInputError, UnknownJobTypeError
from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.registry import JobType, Registry, Stage


class Inner(BaseModel):
    size: int = Field(ge=1)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    count: int = 1
    inner: Inner | None = None


def handler(ctx: Any, data: Any) -> dict[str, Any]:
    """Does the thing."""
    return {}


def other_handler(ctx: Any, data: Any) -> None:
    return None


STAGES = [Stage("load", "Loading", 0, 40), Stage("save", "Saving", 40, 100, pause_safe=False)]


@pytest.fixture
def reg() -> Registry:
    r = Registry()
    r.job_type("zeta", label="Zeta", icon="z", input_model=Input, stages=STAGES)(handler)
    r.job_type("alpha", label="Alpha", icon="a")(other_handler)
    return r


# --- look-ups ------------------------------------------------------------------------------


def test_get_and_names(reg: Registry) -> None:
    assert reg.get("zeta").label == "Zeta"
    assert reg.names() == ["alpha", "zeta"]
    assert [t.name for t in reg.all()] == ["alpha", "zeta"]
    assert "zeta" in reg
    assert "nope" not in reg


def test_unknown_type_lists_known_types(reg: Registry) -> None:
    with pytest.raises(UnknownJobTypeError) as info:
        reg.get("zeat")
    assert "'zeat'" in info.value.message
    assert "alpha, zeta" in info.value.message
    assert info.value.hint


def test_unknown_type_in_empty_registry() -> None:
    with pytest.raises(UnknownJobTypeError, match="none"):
        Registry().get("x")


def test_register_twice() -> None:
    r = Registry()
    r.register(JobType("a", "A", "i", handler))
    r.register(JobType("a", "A again", "i", handler))  # same handler: a re-import, fine
    assert r.get("a").label == "A again"
    with pytest.raises(ValueError, match="already registered"):
        r.register(JobType("a", "A", "i", other_handler))


def test_decorator_returns_the_handler_and_uses_its_docstring(reg: Registry) -> None:
    r = Registry()
    assert r.job_type("t", label="T", icon="i")(handler) is handler
    assert r.get("t").description == "Does the thing."
    r.job_type("u", label="U", icon="i", description="Explicit.")(other_handler)
    assert r.get("u").description == "Explicit."


def test_describe(reg: Registry) -> None:
    d = reg.get("zeta").describe()
    assert d["name"] == "zeta"
    assert d["label"] == "Zeta"
    assert d["icon"] == "z"
    assert d["hidden"] is False
    assert [s["name"] for s in d["stages"]] == ["load", "save"]
    assert d["stages"][1]["pause_safe"] is False
    assert "path" in d["input_schema"]["properties"]
    assert d["input_schema"]["required"] == ["path"]


# --- validate_input ------------------------------------------------------------------------


def test_valid_input(reg: Registry) -> None:
    data = reg.get("zeta").validate_input({"path": "a.pdf", "inner": {"size": 2}})
    assert isinstance(data, Input)
    assert data.path == "a.pdf"
    assert data.count == 1
    assert data.inner == Inner(size=2)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "path"),
        ({"path": "a", "count": "many"}, "count"),
        ({"path": "a", "inner": {"size": 0}}, "inner.size"),
        ({"path": "a", "colour": "red"}, "colour"),
    ],
)
def test_invalid_input_names_the_field(reg: Registry, payload: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        reg.get("zeta").validate_input(payload)
    message = info.value.message
    assert "zeta" in message
    assert f"{field}:" in message
    assert "Fix the listed fields" in info.value.hint
    assert info.value.error_type == "invalid"


def test_several_problems_are_all_listed(reg: Registry) -> None:
    with pytest.raises(InvalidInputError) as info:
        reg.get("zeta").validate_input({"count": "x", "extra": 1})
    for field in ("path:", "count:", "extra:"):
        assert field in info.value.message


@pytest.mark.parametrize("payload", [None, [], ["path"], "path=a", 3, 1.5, True])
def test_non_dict_input(reg: Registry, payload: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        reg.get("zeta").validate_input(payload)
    assert "must be a JSON object" in info.value.message
    assert type(payload).__name__ in info.value.message


def test_default_input_model_accepts_nothing_extra(reg: Registry) -> None:
    jt = reg.get("alpha")
    jt.validate_input({})
    with pytest.raises(InvalidInputError, match="surprise"):
        jt.validate_input({"surprise": 1})


# --- stages --------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 5), (0, 101), (101, 101), (50, 49.9)])
def test_stage_range_validation(start: float, end: float) -> None:
    with pytest.raises(ValueError, match="0 <= start <= end <= 100"):
        Stage("s", "S", start, end)


@pytest.mark.parametrize(("start", "end"), [(0, 0), (0, 100), (100, 100), (33.3, 66.7)])
def test_stage_range_ok(start: float, end: float) -> None:
    s = Stage("s", "S", start, end)
    assert s.pause_safe is True


def test_stage_percent() -> None:
    s = Stage("embed", "Embedding", 40, 90)
    assert s.percent(0) == 40
    assert s.percent(1) == 90
    assert s.percent(0.5) == 65
    assert s.percent(0.25) == 52.5
    assert s.percent(-3) == 40  # clamped
    assert s.percent(7) == 90
    assert Stage("x", "X", 0, 100).percent(1 / 3) == 33.33


@given(
    start=st.floats(0, 100),
    width=st.floats(0, 100),
    fraction=st.floats(-10, 10, allow_nan=False),
)
def test_stage_percent_stays_in_range(start: float, width: float, fraction: float) -> None:
    end = min(100.0, start + width)
    s = Stage("x", "X", start, end)
    p = s.percent(fraction)
    assert round(start, 2) <= p <= round(end, 2)


def test_stages_for_static_and_callable() -> None:
    static = JobType("a", "A", "i", handler, stages=STAGES)
    assert static.stages_for(Input(path="p")) == tuple(STAGES)

    def dynamic(data: Input) -> list[Stage]:
        return [Stage(f"s{i}", f"S{i}", 0, 100) for i in range(data.count)]

    jt = JobType("b", "B", "i", handler, stages=dynamic, input_model=Input)
    assert [s.name for s in jt.stages_for(Input(path="p", count=3))] == ["s0", "s1", "s2"]
    assert jt.describe()["stages"] is None  # depends on the input


def test_builtin_noop_type() -> None:
    reg = load_builtin_handlers()
    noop = reg.get("noop")
    assert noop.hidden is True
    assert noop.label
    data = noop.validate_input({"stages": 4, "units": 2, "unsafe_stages": [2]})
    stages = noop.stages_for(data)
    assert [s.name for s in stages] == ["step-1", "step-2", "step-3", "step-4"]
    assert stages[0].start == 0
    assert stages[-1].end == 100
    assert all(a.end == b.start for a, b in itertools.pairwise(stages))
    assert [s.pause_safe for s in stages] == [True, False, True, True]
    with pytest.raises(InvalidInputError, match="sleep_ms"):
        noop.validate_input({"sleep_ms": -1})
