"""Shared helpers of the wide-and-deep trainer tests: the tiny spec, models and data.

Everything is tiny (tables of a few rows, a few hundred events) and seeded, so the
tests run in seconds on two shared CPU cores.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from trainer.contracts.features import (
    FeatureSpec,
    Kind,
    Treatment,
    load_feature_spec,
    transformed_name,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
TESTDATA = REPO / "tests" / "testdata"
TINY_SPEC = TESTDATA / "tiny_features.yaml"
TINY_EXPERIMENT = TESTDATA / "tiny_experiment.yaml"

# Rows of each table for a hand-built model on the tiny spec (docs/ARCHITECTURE.md):
# hybrid k + 1, dictionary V + 1, hash B, bucketized len(boundaries) + 2.
TINY_ROWS = {
    "user_id": 4,  # k = 3
    "item_id": 9,  # V = 8
    "publisher": 16,
    "category": 8,
    "device": 5,  # V = 4
    "country": 5,  # V = 4
    "price": 5,  # 3 boundaries
}


def tiny_spec() -> FeatureSpec:
    return load_feature_spec(str(TINY_SPEC))


def tiny_config(**overrides: Any) -> Any:
    """The tiny experiment with dotted-key overrides (feature spec made absolute)."""
    from trainer.config import load_config

    return load_config(
        str(TINY_EXPERIMENT), {"feature_spec": str(TINY_SPEC), **overrides}
    )


def make_model(
    spec: FeatureSpec | None = None,
    rows: Mapping[str, int] | None = None,
    hidden_units: tuple[int, ...] = (8, 4),
    seed: int = 0,
) -> Any:
    """A built WideAndDeep on ``spec`` (default: the tiny spec) with seeded weights."""
    import keras

    from trainer.models.wide_deep import WideAndDeep, dummy_inputs

    spec = spec or tiny_spec()
    keras.utils.set_random_seed(seed)
    model = WideAndDeep(
        spec.to_dict(), dict(rows or TINY_ROWS), hidden_units, name="wide_and_deep"
    )
    model(dummy_inputs(spec))
    return model


def random_ids(
    spec: FeatureSpec, rows: Mapping[str, int], n: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Valid ids of every feature and cross of ``spec`` for ``n`` examples."""
    out: dict[str, np.ndarray] = {}
    for f in spec.features:
        key = transformed_name(f.name)
        if f.treatment is Treatment.NUMERIC:
            out[key] = rng.uniform(1.0, 10.0, n).astype("float32")
        elif f.treatment is Treatment.DOUBLE_HASH:
            out[key] = rng.integers(0, f.hash_buckets, (n, 2))
        elif f.treatment is Treatment.HYBRID:
            k = rows[f.name] - 1
            out[key] = np.stack(
                [rng.integers(0, k + 1, n), *rng.integers(0, f.hash_buckets, (2, n))],
                axis=-1,
            )
        elif f.kind is Kind.CATEGORICAL or f.treatment is Treatment.BUCKETIZED:
            out[key] = rng.integers(0, rows[f.name], n)
    for c in spec.crosses:
        out[transformed_name(c.name)] = rng.integers(0, c.hash_buckets, n)
    return out


def learnable_examples(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny-spec ids with a label that the device id decides (plus 10 % noise)."""
    rng = np.random.default_rng(seed)
    examples = random_ids(tiny_spec(), TINY_ROWS, n, rng)
    device = examples[transformed_name("device")]
    flip = rng.random(n) < 0.1
    examples["label"] = ((device < 2) ^ flip).astype("float32")
    return examples


def write_tiny_stream(
    root: str, hours: int, events_per_hour: int = 256, seed: int = 0
) -> None:
    """Synthetic events, small vocabularies, under ``root`` (hour 0 = 2026-01-01T00)."""
    from beam_jobs import synthetic

    config = synthetic.SyntheticConfig(
        seed=seed,
        events_per_hour=events_per_hour,
        num_users=60,
        num_items=40,
        num_publishers=20,
        num_categories=10,
        num_devices=5,
        num_countries=6,
    )
    synthetic.write_stream(root, config, hours, spec=tiny_spec())


def tiny_stats(logs: str, hours: str, out: str, previous: str | None = None) -> str:
    """Runs the real stats job (DirectRunner, no diagnostics) on the tiny spec."""
    from beam_jobs import feature_stats

    feature_stats.compute_stats(
        logs,
        hours,
        tiny_spec(),
        out,
        previous=previous,
        config=feature_stats.StatsConfig(diagnostics=False),
    )
    return out


def task_args(
    train: str, hours: str, artifacts: str, out: str, *sets: str
) -> list[str]:
    """``python -m trainer.task`` flags for the tiny experiment; ``sets`` are extra
    ``--set KEY=VALUE`` overrides after the tiny feature spec."""
    args = ["--spec", str(TINY_EXPERIMENT), "--train", train, "--hours", hours]
    args += ["--artifacts", artifacts, "--out", out]
    for item in (f"feature_spec={TINY_SPEC}", *sets):
        args += ["--set", item]
    return args


def weights_by_path(model: Any) -> dict[str, np.ndarray]:
    return {v.path: np.array(v.numpy()) for v in model.weights}


def slots_by_path(groups: Any) -> dict[str, np.ndarray]:
    """Every optimizer slot of every variable, keyed ``path/slot``."""
    out: dict[str, np.ndarray] = {}
    for opt, variables in groups:
        for v in variables():
            for name, slot in opt.slots(v).items():
                out[f"{v.path}/{name}"] = np.array(slot.numpy())
    return out
