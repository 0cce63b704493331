"""trainer.contracts.typed_config: the one dataclass-from-mapping loader."""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

import pytest

from trainer.contracts import typed_config
from trainer.contracts.typed_config import build, load_yaml, to_plain


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class BadThing(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Inner:
    rows: int
    share: float = 0.5

    def __post_init__(self) -> None:
        if self.rows > 100:
            raise BadThing(f"rows: at most 100, got {self.rows}")


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = dataclasses.field(default_factory=lambda: Inner(1))
    items: tuple[Inner, ...] = ()
    colour: Colour = Colour.RED
    limit: int | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    pair: tuple[int, str] = (0, "")
    mode: Literal["a", "b"] = "a"
    flag: bool = False


FULL = {
    "name": "x",
    "inner": {"rows": 3, "share": 1},
    "items": [{"rows": 1}, {"rows": 2, "share": 0.25}],
    "colour": "blue",
    "limit": None,
    "tags": ["t"],
    "weights": {"a": 2},
    "pair": [1, "p"],
    "mode": "b",
    "flag": True,
}


def test_builds_every_supported_type_and_round_trips() -> None:
    out = build(Outer, FULL)
    assert out.inner == Inner(3, 1.0) and isinstance(out.inner.share, float)
    assert out.items == (Inner(1), Inner(2, 0.25))
    assert out.colour is Colour.BLUE and out.limit is None
    assert out.weights == {"a": 2.0} and out.pair == (1, "p") and out.mode == "b"
    assert build(Outer, to_plain(out)) == out
    assert to_plain(out)["colour"] == "blue" and to_plain(out)["items"][0]["rows"] == 1
    assert build(Outer, {"name": "x", "limit": 4}).limit == 4


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"inner": {"rows": True}}, "inner.rows: must be an integer, got True"),
        ({"inner": {"rows": 2.0}}, "inner.rows: must be an integer, got 2.0"),
        ({"inner": {"rows": 1, "share": "x"}}, "inner.share: must be a number"),
        (
            {"inner": {"rows": 1, "share": float("inf")}},
            "inner.share: must be a finite number",
        ),
        ({"inner": {}}, "inner.rows: required"),
        ({"inner": {"rows": 1, "rowz": 2}}, "inner.rowz: unknown field"),
        ({"items": [{"rows": 1}, {"rows": 101}]}, "items[1].rows: at most 100"),
        ({"items": [{"rows": 1}, 7]}, "items[1]: must be a mapping, got int"),
        ({"colour": "green"}, "colour: 'green' is not one of ['red', 'blue']"),
        ({"limit": "many"}, "limit: must be an integer, got 'many'"),
        ({"tags": "t"}, "tags: must be a list, got 't'"),
        ({"tags": [1]}, "tags[0]: must be a string, got 1"),
        ({"weights": {"a": "b"}}, "weights.a: must be a number"),
        ({"pair": [1]}, "pair: must hold 2 items"),
        ({"mode": "c"}, "mode: 'c' is not one of ['a', 'b']"),
        ({"flag": "yes"}, "flag: must be true or false, got 'yes'"),
    ],
)
def test_errors_are_one_line_naming_source_and_path(patch, message) -> None:
    with pytest.raises(BadThing) as err:
        build(Outer, {**FULL, **patch}, source="f.yaml", error=BadThing)
    assert str(err.value).startswith(f"f.yaml: {message}"), str(err.value)
    assert "\n" not in str(err.value)


def test_root_must_be_a_mapping_with_required_fields() -> None:
    with pytest.raises(ValueError, match=r"^s: <root>: must be a mapping, got list"):
        build(Outer, [1], source="s")
    with pytest.raises(ValueError, match=r"^s: name: required"):
        build(Outer, {}, source="s")


def test_unsupported_annotation_is_a_programming_error() -> None:
    @dataclasses.dataclass
    class Odd:
        when: complex

    with pytest.raises(TypeError, match="unsupported annotation"):
        build(Odd, {"when": 1j})


def test_load_yaml_rejects_duplicates_bytes_and_directories(tmp_path) -> None:
    p = tmp_path / "a.yaml"
    p.write_text("x:\n  y: 1\n  z: 2\n  y: 3\n")
    with pytest.raises(BadThing, match=r"duplicate key 'y' \(first on line 2\)"):
        load_yaml(str(p), "thing", BadThing)
    p.write_text("base: &b {y: 1}\nx: {<<: *b, y: 2}\n")
    assert load_yaml(str(p), "thing")["x"] == {"y": 2}
    p.write_bytes(b"x: \x80\n")
    with pytest.raises(
        BadThing, match=rf"^{p}: not UTF-8 text \(byte 3.* a thing must"
    ):
        load_yaml(str(p), "thing", BadThing)
    with pytest.raises(BadThing, match=rf"^{tmp_path}: is a directory, not a thing"):
        load_yaml(str(tmp_path), "thing", BadThing)
    with pytest.raises(BadThing, match="thing not found"):
        load_yaml(str(tmp_path / "none.yaml"), "thing", BadThing)
    p.write_text("x: [1\n")
    with pytest.raises(
        BadThing, match=rf"^{p}: not valid YAML: .* in \"{p}\", line"
    ) as err:
        load_yaml(str(p), "thing", BadThing)
    assert "\n" not in str(err.value)


def test_unique_key_loader_is_a_safe_loader(tmp_path) -> None:
    assert issubclass(typed_config.UniqueKeyLoader, __import__("yaml").SafeLoader)
    p = tmp_path / "evil.yaml"
    p.write_text("x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_yaml(str(p), "thing")
