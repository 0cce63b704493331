"""The tensorflow-transform step: one hour of events -> transformed TFRecords.

``transform_hour(logs, hour, spec_path, artifacts, out)`` reads the hour's partition
(:func:`trainer.contracts.events.read_partition`; malformed rows go to
``out/dead_letter.jsonl``), runs ``tft_beam.AnalyzeAndTransformDataset`` with
:func:`trainer.preprocessing.make_preprocessing_fn` (the graph the serving signature
runs) on Arrow record batches, on Beam (DirectRunner by default), and writes into
``out``::

    examples-*.tfrecord.gz   gzip tf.Examples: int64 ids per feature/cross, float labels
    schema.json              {key: [dtype, shape]} (trainer.data.examples.read_transformed)
    transform_fn/            the tft transform graph (lineage), transformed_metadata/
    raw_events/              the validated events (Parquet), for trainer.evaluation.evaluate
    dead_letter.jsonl        malformed events with source and reason (may be empty)

Beam and tft are imported inside the functions: ``trainer`` imports without Beam.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trainer.contracts import runners
from trainer.contracts.features import FeatureSpec, Kind, load_feature_spec

logger = logging.getLogger(__name__)

SCHEMA_FILE = "schema.json"
DEAD_LETTER_FILE = "dead_letter.jsonl"
RAW_EVENTS_DIR = "raw_events"  # read by trainer.evaluation.evaluate
EXAMPLES_PREFIX = "examples"
BATCH_ROWS = 8192
DEFAULT_PIPELINE_ARGS = (
    f"--runner={runners.LOCAL_BATCH_RUNNER}",
    "--direct_num_workers=1",
    "--direct_running_mode=in_memory",
)


def transform_hour(
    logs: str,
    hour: str,
    spec_path: str,
    artifacts: str,
    out: str,
    pipeline_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Transforms one hour of events with tft; see the module docstring.

    Args:
        logs: Event log root.
        hour: ``YYYY-MM-DDTHH``.
        spec_path: Feature spec YAML.
        artifacts: The hour's Beam stats artifact (vocabularies, boundaries).
        out: Local output directory.
        pipeline_args: Beam flags; default :data:`DEFAULT_PIPELINE_ARGS`.

    Returns:
        Counts: ``events`` (valid events read), ``dead_letters``, ``examples`` written,
        plus ``hour``, ``out`` and the written ``schema``.

    Raises:
        trainer.contracts.events.MissingPartitionError: if the hour has no data files.
    """
    from trainer.contracts import events

    spec = load_feature_spec(spec_path)
    table, dead = events.read_partition(logs, events.parse_hour(hour), spec)
    os.makedirs(out, exist_ok=True)
    events.write_dead_letters(os.path.join(out, DEAD_LETTER_FILE), dead)
    if dead:
        logger.warning(
            "%s: %d malformed events -> %s", hour, len(dead), DEAD_LETTER_FILE
        )
    raw_path = _write_raw_events(table, os.path.join(out, RAW_EVENTS_DIR))
    args = pipeline_args or DEFAULT_PIPELINE_ARGS
    schema = run_tft([raw_path], spec, artifacts, out, args)
    summary = {
        "hour": hour,
        "out": out,
        "events": table.num_rows,
        "dead_letters": len(dead),
        "examples": _count_examples(out),
        "schema": schema,
    }
    logger.info(
        "transformed %s: %d events, %d dead letters", hour, table.num_rows, len(dead)
    )
    return summary


def raw_feature_spec(spec: FeatureSpec) -> dict[str, Any]:
    """The tft input feature spec: scalar string per categorical, float32 otherwise."""
    import tensorflow as tf

    out = {
        f.name: tf.io.FixedLenFeature(
            [], tf.string if f.kind is Kind.CATEGORICAL else tf.float32
        )
        for f in spec.features
    }
    out.update({k: tf.io.FixedLenFeature([], tf.float32) for k in spec.label_keys})
    return out


def raw_record_batches(
    raw: Mapping[str, np.ndarray], spec: FeatureSpec, batch_rows: int = BATCH_ROWS
) -> tuple[list[Any], Any]:
    """``table_to_raw`` columns -> Arrow record batches + a tft ``TensorAdapterConfig``.

    Each column becomes a list column with one value per row, read by tft as a dense
    scalar tensor; ``""`` / NaN stay the missing markers.
    """
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.public import tfxio

    keys = list(raw_feature_spec(spec))
    columns = {}
    for k in keys:
        values = np.asarray(raw[k])
        flat = (
            pa.array(values.tolist(), pa.string())
            if values.dtype == object
            else pa.array(values.astype(np.float32))
        )
        offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
        columns[k] = pa.ListArray.from_arrays(offsets, flat)
    table = pa.Table.from_pydict(columns)
    dense = schema_pb2.TensorRepresentation.DenseTensor
    representations = {
        k: schema_pb2.TensorRepresentation(dense_tensor=dense(column_name=k))
        for k in keys
    }
    batches = table.to_batches(max_chunksize=batch_rows) or [
        pa.RecordBatch.from_pydict({k: columns[k] for k in keys}, schema=table.schema)
    ]
    return batches, tfxio.TensorAdapterConfig(table.schema, representations)


def read_raw_batches(path: str, spec: FeatureSpec) -> list[Any]:
    """A Parquet file of validated events -> :func:`raw_record_batches` batches.

    Runs inside the pipeline, so that the events travel as a file path, not as data
    pickled into the pipeline graph (which Beam bz2-compresses: 15 s per 50k events).
    """
    import pyarrow.parquet as pq

    from trainer.data import examples as data

    table = pq.read_table(path)
    return raw_record_batches(data.table_to_raw(table, spec), spec)[0]


def run_tft(
    raw_files: Sequence[str],
    spec: FeatureSpec,
    artifacts: str,
    out: str,
    pipeline_args: Sequence[str],
) -> dict[str, list[Any]]:
    """Runs AnalyzeAndTransformDataset; writes examples, transform_fn, schema.json.

    Args:
        raw_files: Parquet files of validated events (``events.schema_for(spec)``).
        spec: The feature spec.
        artifacts: Stats artifact (vocabularies, boundaries).
        out: Output directory.
        pipeline_args: Beam flags.

    Returns:
        The ``schema.json`` content.
    """
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from trainer import preprocessing

    _, adapter_config = raw_record_batches(_empty_raw(spec), spec)
    fn = preprocessing.make_preprocessing_fn(spec, artifacts)
    temp = os.path.join(out, "tft_tmp")
    args = runners.batch_runner_args(pipeline_args)  # never Prism unless asked
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        with tft_beam.Context(temp_dir=temp, force_tf_compat_v1=False):
            raw_pc = (
                p
                | "ListFiles" >> beam.Create(list(raw_files))
                | "ReadBatches" >> beam.FlatMap(read_raw_batches, spec)
            )
            (rows, out_meta), transform_fn = (
                raw_pc,
                adapter_config,
            ) | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                fn, output_record_batches=True
            )
            _ = (
                rows
                | "EncodeExamples" >> beam.FlatMap(_encode, out_meta.schema)
                | "WriteExamples"
                >> beam.io.WriteToTFRecord(
                    os.path.join(out, EXAMPLES_PREFIX),
                    file_name_suffix=".tfrecord.gz",
                    compression_type=beam.io.filesystem.CompressionTypes.GZIP,
                )
            )
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out)
    shutil.rmtree(temp, ignore_errors=True)
    return write_schema(out)


def _encode(element: tuple[Any, Any], schema: Any) -> list[bytes]:
    """A transformed ``(record batch, passthrough)`` -> serialized tf.Examples."""
    from tfx_bsl.coders import example_coder

    return list(example_coder.RecordBatchToExamplesEncoder(schema).encode(element[0]))


def write_schema(out: str) -> dict[str, list[Any]]:
    """Writes ``schema.json`` from the transformed metadata tft wrote into ``out``."""
    import tensorflow as tf
    import tensorflow_transform as tft

    feature_spec = tft.TFTransformOutput(out).transformed_feature_spec()
    schema: dict[str, list[Any]] = {}
    for key, feature in sorted(feature_spec.items()):
        if not isinstance(feature, tf.io.FixedLenFeature):
            raise TypeError(
                f"{key}: transformed feature must be fixed-length, got {feature}"
            )
        dtype = "int64" if feature.dtype == tf.int64 else "float32"
        schema[key] = [dtype, [int(d) for d in feature.shape]]
    with open(os.path.join(out, SCHEMA_FILE), "w", encoding="utf-8") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
    return schema


def _empty_raw(spec: FeatureSpec) -> dict[str, np.ndarray]:
    raw = {
        f.name: np.zeros(0, object if f.kind is Kind.CATEGORICAL else np.float32)
        for f in spec.features
    }
    return raw | {k: np.zeros(0, np.float32) for k in spec.label_keys}


def _write_raw_events(table: Any, directory: str) -> str:
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    path = os.path.join(directory, "part-00000.parquet")
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def _count_examples(out: str) -> int:
    import glob

    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(out, EXAMPLES_PREFIX + "*.tfrecord*")))
    if not files:
        return 0
    return int(
        tf.data.TFRecordDataset(files, compression_type="GZIP").reduce(
            0, lambda n, _: n + 1
        )
    )
