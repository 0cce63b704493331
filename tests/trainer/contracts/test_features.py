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
    (_spec({"name": "a"}, labels=["x"]), "labels", "did you mean 'label_keys'"),
    (_spec({"name": "a"}, label_keys=[]), "label_keys", "non-empty"),
    (["not", "a", "mapping"], "<root>", "mapping"),
]

# Issue 11, item 3: names that are not safe file names, overlapping or repeated
# label/timestamp columns, crosses of a feature with itself or with a numeric,
# non-integer sizes. One case per rule; each names the file and the field.
STRICT_RULES = {
    "name_with_slash": (_spec({"name": "a/b"}), r"features\[0\]\.name", "safe"),
    "name_parent_dir": (_spec({"name": "../x"}), r"features\[0\]\.name", "safe"),
    "name_empty": (_spec({"name": ""}), r"features\[0\]\.name", "safe"),
    "name_leading_dot": (_spec({"name": ".hidden"}), r"features\[0\]\.name", "safe"),
    "name_not_a_string": (_spec({"name": 7}), r"features\[0\]\.name", "string"),
    "label_unsafe": (
        _spec({"name": "a"}, label_keys=["x/y"]),
        r"label_keys\[0\]",
        "safe",
    ),
    "timestamp_unsafe": (
        _spec({"name": "a"}, timestamp_key="../ts"),
        "timestamp_key",
        "safe",
    ),
    "duplicate_label_keys": (
        _spec({"name": "a"}, label_keys=["click", "click"]),
        r"label_keys\[1\]",
        "duplicate label 'click'",
    ),
    "timestamp_is_a_label": (
        _spec({"name": "a"}, timestamp_key="click", label_keys=["click"]),
        r"label_keys\[0\]",
        "also the timestamp_key",
    ),
    "feature_is_a_label": (
        _spec({"name": "click"}, label_keys=["click"]),
        r"features\[0\]\.name",
        "timestamp or a label",
    ),
    "feature_is_the_timestamp": (
        _spec({"name": "ts"}, timestamp_key="ts"),
        r"features\[0\]\.name",
        "timestamp or a label",
    ),
    "cross_with_itself": (
        _spec({"name": "a"}, crosses=[{"features": ["a", "a"]}]),
        r"crosses\[0\]\.features",
        "'a' with itself",
    ),
    "cross_with_a_numeric": (
        _spec(
            {"name": "a"},
            {"name": "p", "kind": "numeric", "treatment": "numeric"},
            crosses=[{"features": ["a", "p"]}],
        ),
        r"crosses\[0\]\.features",
        "'p' is a plain numeric",
    ),
    "cross_repeated": (
        _spec(
            {"name": "a"},
            {"name": "b"},
            crosses=[{"features": ["a", "b"]}, {"features": ["b", "a"]}],
        ),
        r"crosses\[1\]\.features",
        r"same features as crosses\[0\]",
    ),
    "cross_of_one": (
        _spec({"name": "a"}, crosses=[{"features": ["a"]}]),
        r"crosses\[0\]\.features",
        "at least two",
    ),
    "buckets_float": (
        _spec({"name": "a", "hash_buckets": 10.5}),
        r"features\[0\]\.hash_buckets",
        "must be an integer, got 10.5",
    ),
    "buckets_bool": (
        _spec({"name": "p", "kind": "numeric", "num_buckets": True}),
        r"features\[0\]\.num_buckets",
        "must be an integer, got True",
    ),
    "buckets_integral_float": (
        _spec({"name": "a", "top_k": 100.0}),
        r"features\[0\]\.top_k",
        "must be an integer",
    ),
    "cross_buckets_string": (
        _spec(
            {"name": "a"},
            {"name": "b"},
            crosses=[{"features": ["a", "b"], "hash_buckets": "big"}],
        ),
        r"crosses\[0\]\.hash_buckets",
        "must be an integer",
    ),
    "centroids_float": (
        _spec({"name": "a", "treatment": "mgqe", "num_centroids": [256, 6.5]}),
        r"features\[0\]\.num_centroids\[1\]",
        "must be an integer",
    ),
    "centroids_too_many": (
        _spec({"name": "a", "treatment": "dpq", "num_centroids": [2**17]}),
        r"features\[0\]\.num_centroids",
        r"\[2, 65536\]",
    ),
    "share_not_a_number": (
        _spec({"name": "a", "tier_shares": ["ten"]}),
        r"features\[0\]\.tier_shares\[0\]",
        "must be a number",
    ),
}


@pytest.mark.parametrize(
    "raw,field,detail", list(STRICT_RULES.values()), ids=list(STRICT_RULES)
)
def test_strict_rules_name_file_and_field(tmp_path, raw, field, detail) -> None:
    path = _write(tmp_path, raw, "bad_spec.yaml")
    with pytest.raises(FeatureSpecError) as err:
        load_feature_spec(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    assert re.search(rf"{path}: {field}: ", msg), msg
    assert re.search(detail, msg), msg
    assert "\n" not in msg


BAD_FILES = {
    "duplicate_top_level_key": (
        "name: t\nname: u\nfeatures: [{name: a}]\n",
        "found duplicate key 'name'",
    ),
    "duplicate_feature_key": (
        "name: t\nfeatures:\n  - {name: a, top_k: 10, top_k: 20}\n",
        "found duplicate key 'top_k'",
    ),
    "not_utf8": (b"name: t\xff\nfeatures: [{name: a}]\n", "not UTF-8"),
}


@pytest.mark.parametrize(
    "content,detail", list(BAD_FILES.values()), ids=list(BAD_FILES)
)
def test_bad_files_name_the_file(tmp_path, content, detail) -> None:
    path = tmp_path / "spec.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(FeatureSpecError, match=f"^{path}: .*{detail}"):
        load_feature_spec(str(path))


def test_directory_as_spec_path_names_it(tmp_path) -> None:
    with pytest.raises(FeatureSpecError, match=f"^{tmp_path}: is a directory"):
        load_feature_spec(str(tmp_path))


def test_yaml_merge_keys_may_be_overridden(tmp_path) -> None:
    path = _write(
        tmp_path,
        "base: &b {treatment: full, top_k: 8}\n"
        "name: t\nfeatures:\n  - {<<: *b, name: a, top_k: 16}\n",
    )
    # `base` is not a spec field: the merge itself is accepted, the extra key is not.
    with pytest.raises(FeatureSpecError, match="base: unknown field"):
        load_feature_spec(path)
    path = _write(
        tmp_path,
        "name: t\nfeatures:\n  - &a {name: a, treatment: full, top_k: 8}\n"
        "  - {<<: *a, name: b, top_k: 16}\n",
    )
    spec = load_feature_spec(path)
    assert (
        spec.feature("b").top_k == 16 and spec.feature("b").treatment is Treatment.FULL
    )


def test_a_bucketized_numeric_may_be_crossed() -> None:
    spec = features.FeatureSpec.from_dict(
        _spec(
            {"name": "a"},
            {"name": "p", "kind": "numeric"},
            crosses=[{"features": ["a", "p"], "hash_buckets": 97}],
        )
    )
    assert spec.crosses[0].name == "a_x_p" and spec.crosses[0].hash_buckets == 97


def test_direct_construction_checks_the_same_rules() -> None:
    with pytest.raises(FeatureSpecError, match="num_centroids: must not increase"):
        features.FeatureConfig("a", treatment=Treatment.MGQE, num_centroids=(64, 256))
    assert features.FeatureConfig("p", Kind.NUMERIC).treatment is Treatment.BUCKETIZED


def test_one_compression_kind_list() -> None:
    categorical = {t.value for t in Treatment} - {"bucketized", "numeric"}
    assert categorical <= set(features.EMBEDDING_KINDS)
    assert set(features.HASH_KINDS) <= set(features.EMBEDDING_KINDS)
    assert features.embedding_kind(Treatment.BUCKETIZED) == "full"
    assert features.embedding_kind(Treatment.MGQE) == "mgqe"
    with pytest.raises(ValueError, match="no embedding table"):
        features.embedding_kind(Treatment.NUMERIC)


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
