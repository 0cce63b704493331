"""Tests of trainer.preprocessing: golden ids via eager, tft and SavedModel paths."""

from __future__ import annotations

import json
import math
import pathlib
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tools import golden
from tests.tools.golden import GOLDEN_PATH, GoldenCase
from trainer import preprocessing
from trainer.contracts import artifacts
from trainer.contracts.features import (
    CrossConfig,
    FeatureConfig,
    FeatureSpec,
    Kind,
    Treatment,
)

_M64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def case() -> GoldenCase:
    return GoldenCase.read()


def _artifact_dir(tmp_path: pathlib.Path, case: GoldenCase) -> str:
    """Writes the golden v_full vocabulary and price boundaries as a Beam artifact."""
    root = str(tmp_path / "stats")
    artifacts.write_vocab(root, "v_full", case.vocabularies["v_full"])
    artifacts.write_boundaries(root, "price", case.boundaries["price"])
    return root


def _siphash24(k0: int, k1: int, data: bytes) -> int:
    """Plain-Python SipHash-2-4 (Aumasson & Bernstein), an independent reference."""
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & _M64

    def sip_round() -> None:
        v[0] = (v[0] + v[1]) & _M64
        v[1] = rotl(v[1], 13) ^ v[0]
        v[0] = rotl(v[0], 32)  # noqa: E702
        v[2] = (v[2] + v[3]) & _M64
        v[3] = rotl(v[3], 16) ^ v[2]  # noqa: E702
        v[0] = (v[0] + v[3]) & _M64
        v[3] = rotl(v[3], 21) ^ v[0]  # noqa: E702
        v[2] = (v[2] + v[1]) & _M64
        v[1] = rotl(v[1], 17) ^ v[2]
        v[2] = rotl(v[2], 32)  # noqa: E702

    tail = len(data) % 8
    blocks = [
        int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data) - tail, 8)
    ]
    blocks.append(
        int.from_bytes(data[len(data) - tail :], "little") | ((len(data) & 0xFF) << 56)
    )
    for m in blocks:
        v[3] ^= m
        sip_round(), sip_round()
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        sip_round()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


# --------------------------------------------------------------------------- hashing


def test_siphash_reference_passes_the_published_test_vector():
    assert _siphash24(0x0706050403020100, 0x0F0E0D0C0B0A0908, b"") == 0x726FDB47DD0E0E31


def test_hash_values_reproduce_golden_buckets_and_siphash(case):
    values = case.raw["buckets"]["values"]
    assert case.raw["hash_keys"] == [list(k) for k in preprocessing.HASH_KEYS]
    for buckets in [k for k in case.raw["buckets"] if k != "values"]:
        for salt in (0, 1):
            got = preprocessing.hash_values(values, int(buckets), salt)
            assert got.tolist() == case.raw["buckets"][buckets][f"h{salt + 1}"]
            key = preprocessing.HASH_KEYS[salt]
            ref = [_siphash24(*key, v.encode("utf-8")) % int(buckets) for v in values]
            assert got.tolist() == ref


def test_keras_hashing_layer_with_the_key_as_salt_agrees():
    values = np.array([["a"], ["日本語"], [""], ["x" * 300]])
    for salt in (0, 1):
        layer = keras.layers.Hashing(
            num_bins=1000, salt=list(preprocessing.HASH_KEYS[salt])
        )
        expected = preprocessing.hash_values(values.ravel(), 1000, salt)
        np.testing.assert_array_equal(np.asarray(layer(values)).ravel(), expected)


def test_hash_values_equals_hash_strings_and_keeps_shape():
    values = np.array([["a", "b", "c"], ["", "é", "zz"]], dtype=object)
    got = preprocessing.hash_values(values, 97, 1)
    want = preprocessing.hash_strings(tf.constant(values.tolist()), 97, 1).numpy()
    assert got.shape == (2, 3) and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    assert preprocessing.hash_values([], 8, 0).shape == (0,)
    nul = preprocessing.hash_values(["ab\x00", b"ab\x00", "ab"], 2**30, 0).tolist()
    assert nul[0] == nul[1] != nul[2]  # trailing NUL kept, bytes and str agree


def test_the_two_salts_are_independent_functions():
    values = [f"value-{i}" for i in range(4000)]
    h1, h2 = (preprocessing.hash_values(values, 64, s) for s in (0, 1))
    assert np.mean(h1 == h2) < 0.03  # 1/64 ~ 0.016 if independent
    joint = np.bincount(h1 * 64 + h2, minlength=64 * 64)
    assert joint.max() <= 8  # pairs spread over B^2 slots, no function of each other


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    values=st.lists(st.text(max_size=40), min_size=1, max_size=20),
    buckets=st.integers(1, 2**40),
)
def test_buckets_lie_in_range(values, buckets):
    for salt in (0, 1):
        h = preprocessing.hash_values(values, buckets, salt)
        assert h.min() >= 0 and h.max() < buckets


@pytest.mark.parametrize(
    ("buckets", "salt", "argument"), [(0, 0, "num_buckets"), (8, 2, "salt_index")]
)
def test_hash_strings_rejects_bad_arguments(buckets, salt, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        preprocessing.hash_strings(tf.constant(["a"]), buckets, salt)


# --------------------------------------------------------------------------- lookups


def test_dictionary_missing_and_oov_get_row_v():
    table, size = preprocessing.string_table(["a", "b", ""])
    rows = preprocessing.lookup_rows(tf.constant(["b", "", "zz", "a"]), table, size)
    assert rows.numpy().tolist() == [1, 3, 3, 0]
    empty, zero = preprocessing.string_table([])
    assert preprocessing.lookup_rows(
        tf.constant(["a", ""]), empty, zero
    ).numpy().tolist() == [0, 0]


def test_vocabulary_file_rows_and_empty_file(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("x\n日本語\ny\n", encoding="utf-8")
    table, size = preprocessing.string_table(str(path))
    rows = preprocessing.lookup_rows(tf.constant(["y", "日本語", "q", ""]), table, size)
    assert size == 3 and rows.numpy().tolist() == [2, 1, 3, 3]
    (tmp_path / "empty.txt").write_text("")
    empty, zero = preprocessing.string_table(str(tmp_path / "empty.txt"))
    assert zero == 0
    assert preprocessing.lookup_rows(
        tf.constant(["x"]), empty, zero
    ).numpy().tolist() == [0]


def test_duplicate_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="`vocabulary`"):
        preprocessing.string_table(["a", "b", "a"])


def test_bucketize_edges_and_missing():
    x = tf.constant(
        [-math.inf, -1.0, -0.5, 0.0, 2.5, 100.0, math.inf, math.nan], tf.float64
    )
    assert preprocessing.bucketize(x, [-1.0, 0.0, 2.5, 100.0]).numpy().tolist() == [
        0,
        1,
        1,
        2,
        3,
        4,
        4,
        5,
    ]
    assert preprocessing.bucketize(
        tf.constant([3.0, math.nan]), []
    ).numpy().tolist() == [0, 1]


def test_sparse_ragged_and_column_inputs_densify_like_dense():
    dense = tf.constant(["a", "", "b"])
    sparse = tf.SparseTensor([[0, 0], [2, 0]], tf.constant(["a", "b"]), [3, 1])
    ragged = tf.ragged.constant([["a"], [], ["b"]])
    for raw in (sparse, ragged, tf.reshape(dense, [3, 1])):
        assert preprocessing.categorical_strings(raw).numpy().tolist() == [
            b"a",
            b"",
            b"b",
        ]
    all_missing = tf.SparseTensor(
        tf.zeros([0, 2], tf.int64), tf.constant([], tf.string), [2, 0]
    )
    assert preprocessing.categorical_strings(all_missing).numpy().tolist() == [b"", b""]
    ints = tf.constant([[7], [-2]], tf.int64)
    assert preprocessing.categorical_strings(ints).numpy().tolist() == [b"7", b"-2"]


def test_hybrid_ids_are_row_or_k_then_both_hashes():
    spec = FeatureSpec(
        "s", (FeatureConfig("f", treatment=Treatment.HYBRID, hash_buckets=32),)
    )
    xf = preprocessing.FeatureTransform(spec, vocabularies={"f": ["x", "y"]})
    ids = xf({"f": tf.constant(["y", "q", ""])})["f_xf"].numpy()
    h = [preprocessing.hash_values(["y", "q", ""], 32, s) for s in (0, 1)]
    np.testing.assert_array_equal(ids, np.stack([[1, 2, 2], *h], axis=-1))


def test_cross_hashes_the_joined_values():
    spec = FeatureSpec(
        "s",
        (
            FeatureConfig("a", treatment=Treatment.HASH),
            FeatureConfig("b", treatment=Treatment.HASH),
        ),
        crosses=(CrossConfig(("a", "b"), 50),),
    )
    out = preprocessing.FeatureTransform(spec)(
        {"a": tf.constant(["u", ""]), "b": tf.constant(["v", "w"])}
    )
    want = preprocessing.hash_values(["u\x1fv", "\x1fw"], 50, 0)
    np.testing.assert_array_equal(out["a_x_b_xf"].numpy(), want)


def test_missing_vocabulary_and_non_bucketized_cross_are_errors():
    full = FeatureSpec("s", (FeatureConfig("f", treatment=Treatment.FULL),))
    with pytest.raises(ValueError, match="no vocabulary for feature 'f'"):
        preprocessing.FeatureTransform(full)
    num = FeatureConfig("n", Kind.NUMERIC, Treatment.NUMERIC)
    with pytest.raises(ValueError, match="'n' is a plain numeric"):  # the spec's rule
        FeatureSpec(
            "s",
            (FeatureConfig("c", treatment=Treatment.HASH), num),
            crosses=(CrossConfig(("c", "n")),),
        )


def test_numeric_passthrough_and_labels_fill_missing_with_zero():
    spec = FeatureSpec("s", (FeatureConfig("n", Kind.NUMERIC, Treatment.NUMERIC),))
    out = preprocessing.FeatureTransform(spec)(
        {"n": tf.constant([1.5, math.nan]), "label": tf.constant([[1.0], [math.nan]])}
    )
    assert out["n_xf"].numpy().tolist() == [1.5, 0.0] and out[
        "label"
    ].numpy().tolist() == [1.0, 0.0]


# ------------------------------------------------------------------------ golden paths


def test_golden_file_is_what_the_generator_writes(tmp_path, case):
    path = tmp_path / "golden.json"
    assert golden.main(["--write", str(path)]) == 0
    assert json.loads(path.read_text()) == json.loads(GOLDEN_PATH.read_text())


def test_eager_and_tf_function_reproduce_golden(case):
    xf = preprocessing.FeatureTransform(
        case.spec, vocabularies=case.vocabularies, boundaries=case.boundaries
    )
    case.assert_matches(xf(case.tensors()))
    case.assert_matches(tf.function(xf.__call__)(case.tensors()))


def test_vocabulary_file_from_artifacts_reproduces_golden(tmp_path, case):
    root = _artifact_dir(tmp_path, case)
    xf = preprocessing.FeatureTransform(
        case.spec, root, vocabularies={"v_hybrid": case.vocabularies["v_hybrid"]}
    )
    assert xf.vocabulary_sizes == {"v_full": 5, "v_hybrid": 5}
    assert xf.boundaries == {"price": case.boundaries["price"]}
    case.assert_matches(xf(case.tensors()))


def test_saved_serving_module_reproduces_golden_after_reload(tmp_path, case):
    root = _artifact_dir(tmp_path, case)
    module = tf.Module()
    module.transform = preprocessing.FeatureTransform(
        case.spec, root, vocabularies={"v_hybrid": case.vocabularies["v_hybrid"]}
    )
    module.serve = tf.function(
        lambda raw: module.transform(raw),
        input_signature=[preprocessing.serving_input_signature(case.spec)],
    )
    export = str(tmp_path / "saved")
    tf.saved_model.save(module, export, signatures=module.serve.get_concrete_function())
    shutil.rmtree(root)  # the vocabulary must travel as a SavedModel asset
    loaded = tf.saved_model.load(export)
    features = [f.name for f in case.spec.features]
    outputs = loaded.signatures["serving_default"](**case.tensors(features))
    case.assert_matches(outputs, [k for k in case.expected if k != "label"])


def test_tft_analyze_and_transform_reproduces_golden(tmp_path, case):
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    root = _artifact_dir(tmp_path, case)
    sparse = {
        "v_hybrid",
        "price",
    }  # optional columns: tft hands these over as SparseTensor
    feature_spec = {
        k: (
            tf.io.VarLenFeature
            if k in sparse
            else lambda d: tf.io.FixedLenFeature([], d)
        )(tf.string if v.dtype == object else tf.float32)
        for k, v in case.inputs.items()
    }
    instances = [_instance(case, i, sparse) for i in range(len(case.inputs["label"]))]
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(feature_spec)
    )
    fn = preprocessing.make_preprocessing_fn(
        case.spec, root, vocabularies={"v_hybrid": case.vocabularies["v_hybrid"]}
    )
    with tft_beam.Context(temp_dir=str(tmp_path / "tft"), force_tf_compat_v1=False):
        (rows, _), _ = (instances, metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
    outputs = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in case.expected}
    case.assert_matches(outputs)


def _instance(case: GoldenCase, i: int, sparse: set[str]) -> dict:
    row = {}
    for key, values in case.inputs.items():
        v = values[i]
        missing = v == "" if values.dtype == object else math.isnan(v)
        row[key] = ([] if missing else [v]) if key in sparse else v
    return row
