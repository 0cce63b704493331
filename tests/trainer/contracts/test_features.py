"""The feature spec loader: shipped specs load, bad specs name the file and field."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.contracts import features
from trainer.contracts.features import (
    FeatureSpecError,
    Kind,
    Treatment,
    load_feature_spec,
)

SPEC_DIR = pathlib.Path(__file__).resolve().parents[3] / "specs" / "features"
SHIPPED = sorted(SPEC_DIR.glob("*.yaml"))


def _write(tmp_path: pathlib.Path, raw: object, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return str(path)


def _spec(*feats: dict, **extra: object) -> dict:
    return {"name": "t", "features": list(feats), **extra}


def test_shipped_specs_exist() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"synthetic", "movielens", "criteo"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_spec_loads_and_round_trips(path: pathlib.Path) -> None:
    spec = load_feature_spec(str(path))
    assert spec.name == path.stem
    assert spec.features and spec.label_keys
    assert features.FeatureSpec.from_dict(spec.to_dict()) == spec


def test_synthetic_spec_contents(synthetic_spec) -> None:
    assert synthetic_spec.categorical_names[:2] == ("user_id", "item_id")
    item = synthetic_spec.feature("item_id")
    assert item.treatment is Treatment.MGQE and item.num_centroids == (256, 64)
    assert synthetic_spec.feature("price").kind is Kind.NUMERIC
    assert [c.name for c in synthetic_spec.crosses] == [
        "device_x_category",
        "country_x_publisher",
    ]
    with pytest.raises(KeyError, match="nope"):
        synthetic_spec.feature("nope")


def test_defaults_per_kind() -> None:
    spec = features.FeatureSpec.from_dict(
        _spec({"name": "c"}, {"name": "n", "kind": "numeric"})
    )
    assert spec.feature("c").treatment is Treatment.HYBRID
    assert spec.feature("n").treatment is Treatment.BUCKETIZED
    assert spec.timestamp_key == "event_ts" and spec.label_key == "label"
    assert features.transformed_name("c") == "c_xf"


BAD_SPECS = [
    (_spec({"name": "a", "colour": "red"}), r"features\[0\]", "colour"),
    (
        _spec({"name": "a", "kind": "numeric", "treatment": "mgqe"}),
        "treatment",
        "numeric",
    ),
    (_spec({"name": "a", "treatment": "bucketized"}), "treatment", "categorical"),
    (_spec({"name": "a", "treatment": "magic"}), "treatment", "magic"),
    (_spec({"name": "a", "kind": "text"}), "kind", "text"),
    (
        _spec({"name": "a", "treatment": "mgqe", "num_centroids": [64, 256]}),
        "num_centroids",
        "must not increase",
    ),
    (
        _spec(
            {"name": "a", "treatment": "mgqe", "embedding_dim": 12, "num_subspaces": 8}
        ),
        "num_subspaces",
        "not divisible",
    ),
    (
        _spec({"name": "a", "treatment": "mgqe", "num_centroids": [256, 64, 16]}),
        "num_centroids",
        "one K per tier",
    ),
    (_spec({"name": "a"}, {"name": "a"}), r"features\[1\]\.name", "duplicate"),
    (
        _spec({"name": "a"}, {"name": "b"}, crosses=[{"features": ["a", "zz"]}]),
        r"crosses\[0\]\.features",
        "zz",
    ),
    (_spec({"name": "a", "tier_shares": [0.5, 0.2]}), "tier_shares", "must increase"),
    (_spec({"name": "a", "tier_shares": [1.5]}), "tier_shares", r"\(0, 1\)"),
    (_spec({"name": "a", "tier_min_counts": [5, 10]}), "tier_min_counts", "decrease"),
    (_spec({"name": "a", "top_k": 0}), "top_k", ">= 1"),
    (_spec({"name": "a", "embedding_dim": True}), "embedding_dim", "integer"),
    (_spec({"name": "a", "hash_combiner": "max"}), "hash_combiner", "max"),
    (
        _spec({"name": "a", "hash_combiner": "concat", "embedding_dim": 7}),
        "embedding_dim",
        "even",
    ),
    (_spec({"name": "event_ts"}), r"features\[0\]\.name", "timestamp or a label"),
    (_spec({"kind": "numeric"}), r"features\[0\]\.name", "required"),
    ({"name": "t", "features": []}, "features", "non-empty"),
    ({"features": [{"name": "a"}]}, "name", "required"),
    (_spec({"name": "a"}, labels=["x"]), "<root>", "labels"),
    (_spec({"name": "a"}, label_keys=[]), "label_keys", "non-empty"),
    (["not", "a", "mapping"], "<root>", "mapping"),
]


@pytest.mark.parametrize("raw,field,detail", BAD_SPECS)
def test_bad_spec_names_file_and_field(tmp_path, raw, field, detail) -> None:
    path = _write(tmp_path, raw, "bad_spec.yaml")
    with pytest.raises(FeatureSpecError) as err:
        load_feature_spec(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    assert re.search(field, msg), msg
    assert re.search(detail, msg), msg


def test_missing_file(tmp_path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(FeatureSpecError, match=f"{path}: feature spec file not found"):
        load_feature_spec(path)


def test_invalid_yaml(tmp_path) -> None:
    path = _write(tmp_path, "name: x\nfeatures: [ {name: a\n")
    with pytest.raises(FeatureSpecError, match=f"{path}: not valid YAML"):
        load_feature_spec(path)


def test_empty_file_is_not_a_mapping(tmp_path) -> None:
    path = _write(tmp_path, "")
    with pytest.raises(FeatureSpecError, match="must be a mapping, got NoneType"):
        load_feature_spec(path)


def test_num_tiers_from_shares_or_counts() -> None:
    spec = features.FeatureSpec.from_dict(
        _spec(
            {
                "name": "a",
                "treatment": "mgqe",
                "tier_shares": [0.1, 0.5],
                "num_centroids": [256, 64, 16],
            },
            {
                "name": "b",
                "treatment": "mgqe",
                "tier_min_counts": [100, 10, 2],
                "num_centroids": [64],
            },
        )
    )
    assert spec.feature("a").num_tiers == 3
    assert spec.feature("b").num_tiers == 4
    assert spec.feature("b").num_centroids == (64,)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    n=st.integers(min_value=0, max_value=10**7),
    shares=st.lists(
        st.floats(min_value=1e-6, max_value=1 - 1e-6),
        min_size=1,
        max_size=5,
        unique=True,
    ).map(sorted),
)
def test_tier_boundaries_monotone_and_within_vocab(n: int, shares: list[float]) -> None:
    bounds = features.tier_boundaries(n, shares)
    assert len(bounds) == len(shares)
    assert all(0 <= b <= n for b in bounds)
    assert all(a <= b for a, b in zip(bounds, bounds[1:], strict=False))
    for s, b in zip(shares, bounds, strict=True):
        # ceil(s * n): the head holds at least the share, and at most one row more
        assert b >= s * n - 1e-6 and b < s * n + 1
