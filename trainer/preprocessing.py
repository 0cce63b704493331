"""THE raw value -> integer id code, shared by tensorflow-transform and serving.

One set of plain TF functions (dictionary lookup, salted SipHash buckets, crosses,
bucketization) is used by both :func:`make_preprocessing_fn` (the tft
``preprocessing_fn``) and :class:`FeatureTransform` inside the exported serving
signature, so training and serving cannot drift apart (STYLE.md 11). The id layout
per treatment is the table in ``docs/ARCHITECTURE.md``;
``tests/testdata/hash_buckets.json`` guards it.

Outputs: one int64 tensor per categorical/bucketized feature and per cross, named
``transformed_name(key)``: shape ``(batch,)`` for single-id treatments, ``(batch, 2)``
for ``double_hash`` and ``(batch, 3)`` for ``hybrid``; ``numeric`` features pass
through as float32 (missing -> 0.0, not standardized); labels keep their raw names as
float32 (missing -> 0.0).

Raw inputs: categoricals are strings with ``""`` meaning missing (ints are formatted as
decimal strings); numerics are floats with NaN meaning missing. tft may hand over
``SparseTensor``/``RaggedTensor`` or ``(batch, 1)`` tensors; they are densified to
``(batch,)`` with those defaults.

The golden file's generator and reader are test tooling: ``tests/tools/golden.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from trainer.contracts.features import (
    FeatureConfig,
    FeatureSpec,
    Kind,
    Treatment,
    transformed_name,
)

# SipHash-2-4 keys (two 64-bit halves each) of h1 and h2. Never change them: every
# trained model and artifact depends on these exact buckets.
HASH_KEYS: tuple[tuple[int, int], tuple[int, int]] = (
    (0x1F2E3D4C5B6A7988, 0x0123456789ABCDEF),
    (0x7EDCBA9876543210, 0x3C6EF372FE94F82B),
)
CROSS_SEPARATOR = "\x1f"
MISSING = ""

Vocabulary = (
    str | Sequence[str]
)  # a vocabulary file path (line i = row i) or the values


# -------------------------------------------------------------------------- primitives


def hash_strings(values: tf.Tensor, num_buckets: int, salt_index: int) -> tf.Tensor:
    """SipHash-2-4 bucket of each string with the key ``HASH_KEYS[salt_index]``.

    Args:
        values: String tensor of any shape.
        num_buckets: B; results lie in ``[0, B)``.
        salt_index: 0 for h1, 1 for h2.

    Returns:
        int64 tensor shaped like ``values``.

    Example:
        >>> hash_strings(tf.constant(["a", ""]), 16, 0).shape
        TensorShape([2])
    """
    if num_buckets <= 0:
        raise ValueError(f"`num_buckets` must be > 0. Received: {num_buckets}")
    if salt_index not in (0, 1):
        raise ValueError(f"`salt_index` must be 0 or 1. Received: {salt_index}")
    key = list(HASH_KEYS[salt_index])
    return tf.strings.to_hash_bucket_strong(values, num_buckets, key=key)


def hash_values(
    values: Sequence[str] | np.ndarray, num_buckets: int, salt_index: int
) -> np.ndarray:
    """NumPy convenience over :func:`hash_strings` (eager TF under the hood).

    Example:
        >>> hash_values(["a", "b"], 16, 1).dtype
        dtype('int64')
    """
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    # Encode element by element: NumPy's str dtype would drop trailing NUL characters.
    flat = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in arr.ravel()]
    tensor = tf.reshape(tf.constant(flat, dtype=tf.string), arr.shape)
    return hash_strings(tensor, num_buckets, salt_index).numpy().astype(np.int64)


def as_strings(values: tf.Tensor) -> tf.Tensor:
    """Categorical values as strings: strings pass, integers become decimal strings."""
    if values.dtype == tf.string:
        return values
    if values.dtype.is_integer:
        return tf.strings.as_string(values)
    raise TypeError(f"categorical values must be string or integer, got {values.dtype}")


def categorical_strings(raw: Any) -> tf.Tensor:
    """A raw categorical tensor (dense, sparse or ragged) -> dense ``(batch,)`` strings.

    Example:
        >>> categorical_strings(tf.constant([[3], [4]], tf.int64)).numpy().tolist()
        [b'3', b'4']
    """
    if isinstance(raw, tf.SparseTensor):
        raw = tf.SparseTensor(raw.indices, as_strings(raw.values), raw.dense_shape)
    elif isinstance(raw, tf.RaggedTensor):
        raw = raw.with_flat_values(as_strings(raw.flat_values))
    else:
        raw = as_strings(tf.convert_to_tensor(raw))
    return densify(raw, MISSING)


def densify(values: Any, default: Any) -> tf.Tensor:
    """Sparse, ragged, ``(batch, 1)`` or ``(batch,)`` -> dense ``(batch,)``.

    At most one value per example is expected; missing examples take ``default``.

    Example:
        >>> densify(tf.constant([["a"], ["b"]]), "").shape
        TensorShape([2])
    """
    if isinstance(values, tf.SparseTensor):
        one_column = tf.SparseTensor(
            values.indices, values.values, [values.dense_shape[0], 1]
        )
        dense = tf.sparse.to_dense(one_column, default_value=default)
        return tf.squeeze(dense, axis=1)
    if isinstance(values, tf.RaggedTensor):
        return tf.squeeze(
            values.to_tensor(default_value=default, shape=[None, 1]), axis=1
        )
    values = tf.convert_to_tensor(values)
    if values.shape.rank == 2:
        return tf.reshape(values, [-1])
    return values


def string_table(vocabulary: Vocabulary) -> tuple[tf.lookup.StaticHashTable, int]:
    """A value -> row table (missing from it -> -1) and the vocabulary size V.

    Args:
        vocabulary: Path of a vocabulary file (line i holds the value of row i), or the
            values themselves in row order.

    Returns:
        ``(table, V)``.

    Raises:
        ValueError: if an in-memory vocabulary has duplicates.

    Example:
        >>> table, size = string_table(["a", "b"])
        >>> size
        2
    """
    if isinstance(vocabulary, str):
        size = _count_lines(vocabulary)
        if size == 0:  # TextFileInitializer rejects empty files
            return string_table([])
        init: tf.lookup.KeyValueTensorInitializer | tf.lookup.TextFileInitializer
        init = tf.lookup.TextFileInitializer(
            vocabulary,
            key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            vocab_size=size,
        )
    else:
        values = [str(v) for v in vocabulary]
        if len(set(values)) != len(values):
            raise ValueError("`vocabulary` has duplicate values")
        size = len(values)
        # An empty dictionary maps "" to -1 only: every value is OOV.
        keys = tf.constant(values or [MISSING], dtype=tf.string)
        rows = tf.constant(list(range(size)) or [-1], dtype=tf.int64)
        init = tf.lookup.KeyValueTensorInitializer(keys, rows)
    return tf.lookup.StaticHashTable(init, default_value=-1), size


def _count_lines(path: str) -> int:
    """Rows of a vocabulary file, lines split on ``\\n`` like ``read_vocab``."""
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def lookup_rows(
    values: tf.Tensor, table: tf.lookup.StaticHashTable, size: int
) -> tf.Tensor:
    """Dictionary row of each value; missing (``""``) and OOV -> ``size`` (row V)."""
    rows = table.lookup(values)
    oov = tf.logical_or(tf.less(rows, 0), tf.equal(values, MISSING))
    return tf.where(oov, tf.constant(size, tf.int64), rows)


def bucketize(values: tf.Tensor, boundaries: Sequence[float]) -> tf.Tensor:
    """Bucket of each float: ``i`` with ``boundaries[i-1] <= x < boundaries[i]``.

    Results lie in ``[0, len(boundaries)]``; NaN (missing) -> ``len(boundaries) + 1``.

    Example:
        >>> bucketize(tf.constant([0.5, 1.0, float("nan")]), [1.0]).numpy().tolist()
        [0, 1, 2]
    """
    x = tf.cast(values, tf.float64)
    if boundaries:
        edges = tf.constant(sorted(float(b) for b in boundaries), dtype=tf.float64)
        flat = tf.reshape(x, [-1])
        ids = tf.searchsorted(edges, flat, side="right", out_type=tf.int64)
        ids = tf.reshape(ids, tf.shape(x, out_type=tf.int64))
    else:
        ids = tf.zeros_like(x, dtype=tf.int64)
    missing = tf.constant(len(boundaries) + 1, tf.int64)
    return tf.where(tf.math.is_nan(x), missing, ids)


def cross_strings(columns: Sequence[tf.Tensor]) -> tf.Tensor:
    """Joins the string columns of a cross with ``\\x1f`` (missing stays ``""``)."""
    return tf.strings.join(list(columns), separator=CROSS_SEPARATOR)


# ------------------------------------------------------------------------- per feature


class FeatureTransform(tf.Module):
    """Maps raw feature tensors to the id tensors of ``docs/ARCHITECTURE.md``.

    Tables are created in ``__init__``; as a ``tf.Module`` it is tracked (vocabulary
    files become SavedModel assets) when assigned to a module that is saved. In the tft
    path it is built inside ``preprocessing_fn`` (see :func:`make_preprocessing_fn`).

    Args:
        spec: The feature spec.
        artifact_dir: Beam stats artifact directory; vocabularies are read from
            ``vocab/<feature>.txt``, boundaries via ``artifacts.load_boundaries``.
        vocabularies: Explicit vocabularies by feature (override ``artifact_dir``).
        boundaries: Explicit numeric bucket boundaries by feature.

    Example:
        >>> spec = FeatureSpec("s", (FeatureConfig("item", treatment=Treatment.FULL),))
        >>> xf = FeatureTransform(spec, vocabularies={"item": ["a", "b"]})
        >>> xf({"item": tf.constant(["b", "zz"])})["item_xf"].numpy().tolist()
        [1, 2]
    """

    def __init__(
        self,
        spec: FeatureSpec,
        artifact_dir: str | None = None,
        vocabularies: Mapping[str, Vocabulary] | None = None,
        boundaries: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        super().__init__(name="feature_transform")
        self.spec = spec
        self.tables: dict[str, tf.lookup.StaticHashTable] = {}
        self.vocabulary_sizes: dict[str, int] = {}
        self.boundaries: dict[str, list[float]] = {}
        for f in spec.features:
            if f.kind is Kind.CATEGORICAL and f.uses_dictionary:
                vocab = _resolve_vocabulary(f.name, artifact_dir, vocabularies)
                table, size = string_table(vocab)
                self.tables[f.name], self.vocabulary_sizes[f.name] = table, size
            elif f.treatment is Treatment.BUCKETIZED:
                self.boundaries[f.name] = _resolve_boundaries(
                    f.name, artifact_dir, boundaries
                )

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        """Raw tensors by feature key -> ids by ``transformed_name(key)`` (+ labels)."""
        outputs: dict[str, tf.Tensor] = {}
        for f in self.spec.features:
            outputs[transformed_name(f.name)] = self.transform_feature(
                f, inputs[f.name]
            )
        for c in self.spec.crosses:
            strings = [
                self._cross_column(self.spec.feature(n), inputs[n]) for n in c.features
            ]
            outputs[transformed_name(c.name)] = hash_strings(
                cross_strings(strings), c.hash_buckets, 0
            )
        for key in self.spec.label_keys:
            if key in inputs:
                label = densify(_cast(inputs[key], tf.float32), 0.0)
                outputs[key] = tf.where(
                    tf.math.is_nan(label), tf.zeros_like(label), label
                )
        return outputs

    def transform_feature(self, feature: FeatureConfig, raw: Any) -> tf.Tensor:
        """One feature's raw tensor -> its ids (float32 values for ``numeric``)."""
        if feature.kind is Kind.NUMERIC:
            x = densify(_cast(raw, tf.float64), math.nan)
            if feature.treatment is Treatment.BUCKETIZED:
                return bucketize(x, self.boundaries[feature.name])
            return tf.cast(tf.where(tf.math.is_nan(x), tf.zeros_like(x), x), tf.float32)
        return self._categorical_ids(feature, categorical_strings(raw))

    def _categorical_ids(self, feature: FeatureConfig, values: tf.Tensor) -> tf.Tensor:
        t, b = feature.treatment, feature.hash_buckets
        if t is Treatment.HASH:
            return hash_strings(values, b, 0)
        if t is Treatment.DOUBLE_HASH:
            return tf.stack([hash_strings(values, b, s) for s in (0, 1)], axis=-1)
        name = feature.name
        rows = lookup_rows(values, self.tables[name], self.vocabulary_sizes[name])
        if t is Treatment.HYBRID:
            hashes = [hash_strings(values, b, s) for s in (0, 1)]
            return tf.stack([rows, *hashes], axis=-1)
        return rows

    def _cross_column(self, feature: FeatureConfig, raw: Any) -> tf.Tensor:
        if feature.kind is Kind.CATEGORICAL:
            return categorical_strings(raw)
        return tf.strings.as_string(self.transform_feature(feature, raw))


def make_preprocessing_fn(
    spec: FeatureSpec,
    artifact_dir: str | None = None,
    vocabularies: Mapping[str, Vocabulary] | None = None,
    boundaries: Mapping[str, Sequence[float]] | None = None,
) -> Callable[[Mapping[str, Any]], dict[str, tf.Tensor]]:
    """The tensorflow-transform ``preprocessing_fn``: the same graph the server runs.

    Args:
        spec: The feature spec.
        artifact_dir: Beam stats artifact directory (vocabularies, boundaries).
        vocabularies: Explicit vocabularies by feature.
        boundaries: Explicit bucket boundaries by feature.

    Returns:
        ``preprocessing_fn(inputs) -> outputs``; tables are created inside it, as
        tft requires.

    Example:
        >>> fn = make_preprocessing_fn(spec, "/tmp/stats")  # doctest: +SKIP
        >>> tft_beam.AnalyzeAndTransformDataset(fn)          # doctest: +SKIP
    """

    def preprocessing_fn(inputs: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        return FeatureTransform(spec, artifact_dir, vocabularies, boundaries)(inputs)

    return preprocessing_fn


def serving_input_signature(spec: FeatureSpec) -> dict[str, tf.TensorSpec]:
    """Raw inputs of the serving signature: ``(None,)`` string / float32 per feature.

    Example:
        >>> serving_input_signature(spec)["item"].dtype  # doctest: +SKIP
        tf.string
    """
    return {
        f.name: tf.TensorSpec(
            [None], tf.string if f.kind is Kind.CATEGORICAL else tf.float32, name=f.name
        )
        for f in spec.features
    }


def _resolve_vocabulary(
    name: str, artifact_dir: str | None, vocabularies: Mapping[str, Vocabulary] | None
) -> Vocabulary:
    if vocabularies is not None and name in vocabularies:
        return vocabularies[name]
    if artifact_dir is None:
        raise ValueError(
            f"no vocabulary for feature {name!r}: pass `artifact_dir` or `vocabularies`"
        )
    from trainer.contracts import (
        artifacts,
    )  # lazy: only the artifact path needs the layout

    return artifacts.vocab_path(artifact_dir, name)


def _resolve_boundaries(
    name: str,
    artifact_dir: str | None,
    boundaries: Mapping[str, Sequence[float]] | None,
) -> list[float]:
    if boundaries is not None and name in boundaries:
        return [float(b) for b in boundaries[name]]
    if artifact_dir is None:
        raise ValueError(
            f"no boundaries for feature {name!r}: pass `artifact_dir` or `boundaries`"
        )
    from trainer.contracts import (
        artifacts,
    )  # lazy: only the artifact path needs the loader

    return [float(b) for b in artifacts.load_boundaries(artifact_dir, name)]


def _cast(raw: Any, dtype: tf.DType) -> Any:
    if isinstance(raw, tf.SparseTensor):
        return tf.SparseTensor(raw.indices, tf.cast(raw.values, dtype), raw.dense_shape)
    if isinstance(raw, tf.RaggedTensor):
        return tf.cast(raw, dtype)
    return tf.cast(tf.convert_to_tensor(raw), dtype)
