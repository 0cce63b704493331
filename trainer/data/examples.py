"""Input functions: hourly events or transformed TFRecords -> ``tf.data`` batches of ids.

Two sources feed the trainer:

* **Events** (``read_events``): the hour partitions of the event log, validated by
  :mod:`trainer.contracts.events` rules, turned into raw tensors and then into ids by
  :class:`trainer.preprocessing.FeatureTransform` — the same code the serving signature
  runs.
* **Transformed examples** (``read_transformed``): the TFRecords written by the
  tensorflow-transform step (:mod:`trainer.transform`).

Both end as a dict of NumPy arrays (ids keyed by ``transformed_name`` plus the labels),
which :func:`make_dataset` batches deterministically.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from trainer import preprocessing
from trainer.contracts.features import FeatureSpec, Kind, Treatment

logger = logging.getLogger(__name__)

Examples = dict[str, np.ndarray]
_CHUNK = 65_536


def table_to_raw(table: pa.Table, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Arrow events -> raw arrays of the serving signature ("" / NaN = missing)."""
    raw: dict[str, np.ndarray] = {}
    for f in spec.features:
        col = (
            table[f.name] if f.name in table.column_names else pa.nulls(table.num_rows)
        )
        if f.kind is Kind.CATEGORICAL:
            col = pc.fill_null(pc.cast(col, pa.string()), "")
            raw[f.name] = np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
        else:
            vals = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            raw[f.name] = np.asarray(vals, dtype="float32")
    for key in spec.label_keys:
        raw[key] = table[key].to_numpy(zero_copy_only=False).astype("float32")
    return raw


def transform_raw(
    raw: Mapping[str, np.ndarray], transform: preprocessing.FeatureTransform
) -> Examples:
    """Runs the preprocessing graph eagerly in chunks; returns ids + labels as NumPy."""
    n = len(next(iter(raw.values()))) if raw else 0
    chunks: list[dict[str, np.ndarray]] = []
    fn = tf.function(transform.__call__)
    for start in range(0, max(n, 1), _CHUNK):
        part = {}
        for k, v in raw.items():
            sl = v[start : start + _CHUNK]
            part[k] = tf.constant(sl.astype(str) if sl.dtype == object else sl)
        if n == 0:
            part = {k: tf.constant(v) for k, v in raw.items()}
        out = fn(part)
        chunks.append({k: t.numpy() for k, t in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def read_events(
    logs: str, hours: Sequence[Any], spec: FeatureSpec
) -> tuple[pa.Table, int]:
    """Reads and validates hour partitions; returns the clean table and the bad count."""
    from trainer.contracts import events  # pure Python module, no Beam import

    tables, bad = [], 0
    for hour in hours:
        table, dead = events.read_partition(logs, hour, spec)
        if dead:
            logger.warning(
                "%s: %d malformed events skipped", events.format_hour(hour), len(dead)
            )
        tables.append(table)
        bad += events.dead_count(dead)  # a lost row group counts all its rows
    if not tables:
        return events.empty_table(spec), bad
    return pa.concat_tables(tables), bad


def table_rows(
    spec: FeatureSpec, transform: preprocessing.FeatureTransform
) -> dict[str, int]:
    """Rows of each feature's id space (docs/ARCHITECTURE.md), for model construction."""
    rows: dict[str, int] = {}
    for f in spec.features:
        if f.kind is Kind.CATEGORICAL:
            if f.uses_dictionary:
                rows[f.name] = transform.vocabulary_sizes[f.name] + 1
            else:
                rows[f.name] = f.hash_buckets
        elif f.treatment is Treatment.BUCKETIZED:
            rows[f.name] = len(transform.boundaries[f.name]) + 2
    return rows


def make_dataset(
    examples: Examples,
    label_key: str,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    epochs: int = 1,
) -> tf.data.Dataset:
    """Deterministic batches of (features, label); the same seed gives the same order.

    The permutation is drawn per epoch with NumPy from ``seed + epoch`` so that a run
    resumed at step ``s`` can skip exactly the batches it already trained on.
    """
    n = len(examples[label_key])
    parts = []
    for epoch in range(epochs):
        order = (
            np.random.default_rng(seed + epoch).permutation(n)
            if shuffle
            else np.arange(n)
        )
        parts.append(order)
    order = np.concatenate(parts) if parts else np.arange(0)
    feats = {k: v[order] for k, v in examples.items() if k != label_key}
    labels = examples[label_key][order]
    # Slice whole batches in NumPy: one dataset element per batch, instead of
    # from_tensor_slices(...).batch(), which assembles every batch row by row (that
    # made wide-and-deep training input-bound). Same batches, same order.
    full = len(order) // batch_size * batch_size

    def batches(lo: int, hi: int, size: int) -> tf.data.Dataset:
        f = {k: v[lo:hi].reshape((-1, size) + v.shape[1:]) for k, v in feats.items()}
        return tf.data.Dataset.from_tensor_slices((f, labels[lo:hi].reshape(-1, size)))

    # The last, partial batch (none when ``rest`` is 0); concatenating it also leaves
    # the batch dimension unknown, as .batch() does.
    rest = len(order) - full
    ds = batches(0, full, batch_size).concatenate(
        batches(full, len(order), max(rest, 1))
    )
    return ds.prefetch(2)


def num_batches(
    examples: Examples, label_key: str, batch_size: int, epochs: int
) -> int:
    """Batches of :func:`make_dataset` (epochs are concatenated before batching)."""
    n = len(examples[label_key])
    return -(-epochs * n // batch_size)


# ------------------------------------------------------------ transformed TFRecords


def write_transformed(examples: Examples, out_dir: str) -> str:
    """Writes transformed examples as TFRecords + a JSON schema; returns the file path."""
    os.makedirs(out_dir, exist_ok=True)
    schema = {k: [str(v.dtype), list(v.shape[1:])] for k, v in examples.items()}
    with open(os.path.join(out_dir, "schema.json"), "w") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
    path = os.path.join(out_dir, "examples-00000.tfrecord.gz")
    n = len(next(iter(examples.values()))) if examples else 0
    opts = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(path, opts) as w:
        for i in range(n):
            feat = {}
            for k, v in examples.items():
                x = np.ravel(v[i])
                if v.dtype.kind in "iu":
                    feat[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=x))
                else:
                    feat[k] = tf.train.Feature(float_list=tf.train.FloatList(value=x))
            w.write(
                tf.train.Example(
                    features=tf.train.Features(feature=feat)
                ).SerializeToString()
            )
    return path


def read_transformed(in_dir: str) -> Examples:
    """Reads TFRecords written by :func:`write_transformed` or the tft step."""
    with open(os.path.join(in_dir, "schema.json")) as f:
        schema = json.load(f)
    spec = {}
    for k, (dtype, shape) in schema.items():
        tf_dtype = tf.int64 if np.dtype(dtype).kind in "iu" else tf.float32
        spec[k] = tf.io.FixedLenFeature(shape, tf_dtype)
    files = sorted(glob.glob(os.path.join(in_dir, "*.tfrecord*")))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(_CHUNK)
    ds = ds.map(lambda x: tf.io.parse_example(x, spec))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in schema}
    for batch in ds:
        for k, v in batch.items():
            cols[k].append(v.numpy())
    return {
        k: np.concatenate(v) if v else np.zeros((0, *schema[k][1]), schema[k][0])
        for k, v in cols.items()
    }
