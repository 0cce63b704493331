"""Data, stats artifacts and scoring of the hybrid hashing reproduction.

Helpers of :mod:`reproduce.hashing`: the synthetic stream and the MovieLens-1M
events (split by time), the Beam stats job (reused when its artifact is finished),
transformed TFRecords for hour ranges with gaps, and RCE of a trained model on raw
events. Every step that already finished in the work directory is reused.

Example:
    >>> logs = synthetic_stream("/tmp/w", 4, 1000)  # doctest: +SKIP
    >>> spec = "specs/features/synthetic_full.yaml"
    >>> stats = run_stats(logs, "2026-01-01T00", spec, "/tmp/w/s")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_SEED = 0
MOVIELENS_TRAIN_SHARE = 0.8
# Smaller vocabularies than the stream's defaults, so ids repeat within a few hours.
SYNTHETIC_VOCAB = {"num_users": 30_000, "num_items": 10_000, "num_publishers": 2_000}


def write_spec(spec: dict[str, Any], directory: str) -> str:
    """Writes a feature-spec dict as ``directory/<name>.yaml``; returns the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{spec['name']}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


def run_stats(
    logs: str, hours: Any, spec_path: str, out: str, previous: str | None = None
) -> str:
    """The Beam stats job (reused when ``out`` already holds a finished artifact)."""
    from beam_jobs import feature_stats
    from trainer.contracts import artifacts, storage

    if not storage.exists(artifacts.manifest_path(out)):
        feature_stats.compute_stats(
            logs,
            hours,
            spec_path,
            out,
            previous,
            feature_stats.StatsConfig(diagnostics=False),
        )
    return out


def vocab_sizes(stats_dir: str, features: Sequence[str]) -> dict[str, int]:
    """Dictionary size V of each of ``features`` in a stats artifact."""
    from trainer.contracts import artifacts

    manifest = artifacts.load_manifest(stats_dir)
    return {f: int(manifest["features"][f]["vocab_size"]) for f in features}


def evaluate_rce(
    model_dir: str, spec_path: str, table: Any, seen: np.ndarray | None = None
) -> dict[str, float]:
    """RCE (%) of the trained model in ``model_dir`` on raw events ``table``.

    Returns ``{"rce": ...}``, plus ``"rce_seen"`` with a boolean ``seen`` mask over
    the events (:func:`seen_mask`): the RCE of those events against their own mean
    label.
    """
    import keras

    from trainer import preprocessing
    from trainer.contracts.features import load_feature_spec
    from trainer.data import examples as data
    from trainer.evaluation import metrics

    spec = load_feature_spec(spec_path)
    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"))
    transform = preprocessing.FeatureTransform(
        spec, os.path.join(model_dir, "artifacts")
    )
    examples = data.transform_raw(data.table_to_raw(table, spec), transform)
    labels = examples[spec.label_key]
    ids = {k: v for k, v in examples.items() if k.endswith("_xf")}
    logits = [
        np.asarray(model({k: v[i : i + 8192] for k, v in ids.items()}))
        for i in range(0, len(labels), 8192)
    ]
    logits = np.concatenate(logits)
    out = {"rce": metrics.relative_cross_entropy(labels, logits, from_logits=True)}
    if seen is not None:
        out["rce_seen"] = metrics.relative_cross_entropy(
            labels[seen], logits[seen], from_logits=True
        )
    return out


def seen_mask(eval_table: Any, train_table: Any, features: Sequence[str]) -> np.ndarray:
    """Events of ``eval_table`` whose every one of ``features`` occurs in training.

    On the rest (new users, new items), a dictionary sends the unseen value to its
    OOV row while hashing sends it to rows trained for other values; the RCE on this
    subset separates that effect from collisions among trained values.
    """
    import pyarrow.compute as pc

    mask = np.ones(eval_table.num_rows, bool)
    for f in features:
        trained = pc.unique(train_table[f])
        mask &= pc.is_in(eval_table[f], value_set=trained).to_numpy(
            zero_copy_only=False
        )
    return mask


def hour_name(i: int) -> str:
    """``YYYY-MM-DDTHH`` of the synthetic stream's hour ``i``."""
    from beam_jobs import synthetic
    from trainer.contracts import events

    return events.format_hour(synthetic.DEFAULT_START_HOUR + dt.timedelta(hours=i))


def synthetic_stream(root: str, hours: int, events_per_hour: int) -> str:
    """Writes (once) ``hours`` hours of the synthetic stream under ``root/logs``."""
    from beam_jobs import synthetic
    from trainer.contracts import events

    logs = os.path.join(root, "logs")
    config = synthetic.SyntheticConfig(
        seed=DATA_SEED, events_per_hour=events_per_hour, **SYNTHETIC_VOCAB
    )
    if len(events.list_partitions(logs) if os.path.isdir(logs) else []) < hours:
        synthetic.write_stream(logs, config, hours)
    return logs


def movielens_split(data_dir: str, root: str, users: int | None) -> dict[str, Any]:
    """MovieLens events under ``root/logs`` split by time into train/eval hours."""
    from beam_jobs import movielens
    from trainer.contracts import events
    from trainer.contracts.features import load_feature_spec

    spec_path = os.path.join(REPO, "specs", "features", "movielens_full.yaml")
    spec = load_feature_spec(spec_path)
    logs = os.path.join(root, "logs")
    if not os.path.isdir(logs):
        movielens.run(data_dir, logs, spec, users)
    hours = events.list_partitions(logs)
    table, _ = read_events(logs, hours, spec)
    ts = np.sort(table[spec.timestamp_key].to_numpy())
    cut = dt.datetime.fromtimestamp(
        (int(ts[int(MOVIELENS_TRAIN_SHARE * len(ts))]) // 3600) * 3600, dt.UTC
    )
    return {
        "logs": logs,
        "train_hours": [h for h in hours if h < cut],
        "eval_hours": [h for h in hours if h >= cut],
        "events": len(ts),
    }


def read_events(logs: str, hours: Sequence[dt.datetime], spec: Any) -> tuple[Any, int]:
    """Valid events of ``hours`` (:func:`trainer.data.examples.read_events`), bad count."""
    from trainer.data import examples as data

    return data.read_events(logs, hours, spec)


def transformed_examples(
    logs: str, hours: Sequence[dt.datetime], spec_path: str, stats: str, out: str
) -> str:
    """Events transformed with ``stats``' dictionaries, as TFRecords (once).

    ``trainer.task.run`` reads hour *ranges*, and a range with hours that have no
    partition (MovieLens has gaps) is an error there, so the MovieLens training hours
    go through the transformed-examples input instead.
    """
    from trainer import preprocessing
    from trainer.contracts.features import load_feature_spec
    from trainer.data import examples as data

    if not os.path.isfile(os.path.join(out, "schema.json")):
        spec = load_feature_spec(spec_path)
        table, _ = read_events(logs, hours, spec)
        xf = preprocessing.FeatureTransform(spec, stats)
        data.write_transformed(
            data.transform_raw(data.table_to_raw(table, spec), xf), out
        )
    return out
