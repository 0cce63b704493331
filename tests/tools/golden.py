"""The golden file of the value -> id contract: generator and reader.

``tests/testdata/hash_buckets.json`` pins the ids :mod:`trainer.preprocessing`
gives to awkward raw values (empty, unicode, separators, huge numbers, NaN) under
every treatment, the SipHash buckets at several sizes and the crosses. Every path that
trains or serves (eager, ``tf.function``, tf.Transform, a saved serving module) is
tested against it. Regenerate it only when the hashing contract changes on purpose::

    python -m tests.tools.golden --write tests/testdata/hash_buckets.json
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from trainer.contracts.features import (
    CrossConfig,
    FeatureConfig,
    FeatureSpec,
    Kind,
    Treatment,
)
from trainer.preprocessing import HASH_KEYS, FeatureTransform, hash_values

GOLDEN_PATH = (
    pathlib.Path(__file__).resolve().parents[1] / "testdata" / "hash_buckets.json"
)
COMMAND = "python -m tests.tools.golden --write <this file>"

_VALUES = (
    "", "a", "b", "apple", "Apple", " apple", "0", "-1", "12345678901234567890", "é",
    "日本語", "🙂 emoji", "tab\tsep", "x\x1fy", "null", "[OOV]", "long-" * 200, "ß",
    "zz", "a\x00b",
)  # fmt: skip
_VOCAB = ("a", "b", "apple", "日本語", "0")
_NUMBERS = (
    math.nan, -5.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.5, 2.49, 99.9,
    100.0, 1e9, -1e9, math.nan, 3.0, -0.0, 2.5000002, 100.5, 7.0, 0.5,
)  # fmt: skip
_BOUNDARIES = (-1.0, 0.0, 2.5, 100.0)
_BUCKET_COUNTS = (16, 1024, 2**22)


class GoldenCase:
    """The golden file parsed: spec, vocabularies, boundaries, raw inputs, expected ids.

    Example:
        >>> case = GoldenCase.read(GOLDEN_PATH)  # doctest: +SKIP
        >>> xf = FeatureTransform(case.spec, vocabularies=case.vocabularies,
        ...                       boundaries=case.boundaries)  # doctest: +SKIP
    """

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.spec = FeatureSpec.from_dict(raw["spec"], source="golden")
        self.vocabularies: dict[str, list[str]] = dict(raw["vocabularies"])
        self.boundaries: dict[str, list[float]] = dict(raw["boundaries"])
        self.inputs: dict[str, np.ndarray] = {
            k: _array(v) for k, v in raw["inputs"].items()
        }
        self.expected = {k: np.asarray(v) for k, v in raw["expected"].items()}

    @classmethod
    def read(cls, path: str | pathlib.Path = GOLDEN_PATH) -> GoldenCase:
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def tensors(self, keys: Sequence[str] | None = None) -> dict[str, tf.Tensor]:
        """The raw inputs as tensors (strings for categoricals, float32 numerics)."""
        return {
            k: tf.constant(
                self.inputs[k].tolist(),
                tf.string if self.inputs[k].dtype == object else tf.float32,
            )
            for k in keys or self.inputs.keys()
        }

    def assert_matches(
        self, outputs: Mapping[str, Any], keys: Sequence[str] | None = None
    ) -> None:
        """Every expected output (or those in ``keys``) equals ``outputs`` exactly."""
        for key in keys or self.expected.keys():
            np.testing.assert_array_equal(
                np.asarray(outputs[key]), self.expected[key], err_msg=key
            )


def _array(values: list[Any]) -> np.ndarray:
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=object)
    return np.asarray([math.nan if v is None else v for v in values], dtype=np.float32)


def _spec() -> FeatureSpec:
    cat = Kind.CATEGORICAL
    return FeatureSpec(
        name="golden",
        features=(
            FeatureConfig("v_full", cat, Treatment.FULL),
            FeatureConfig("v_hash", cat, Treatment.HASH, hash_buckets=1024),
            FeatureConfig("v_double", cat, Treatment.DOUBLE_HASH, hash_buckets=16),
            FeatureConfig(
                "v_hybrid", cat, Treatment.HYBRID, top_k=5, hash_buckets=1024
            ),
            FeatureConfig("price", Kind.NUMERIC, Treatment.BUCKETIZED),
        ),
        crosses=(
            CrossConfig(("v_full", "v_hash"), 1000),
            CrossConfig(("v_hash", "price"), 97),
        ),
    )


def build_golden() -> dict[str, Any]:
    """Computes the golden file's content with the eager path of trainer.preprocessing."""
    values = list(_VALUES)
    spec = _spec()
    inputs: dict[str, list[Any]] = {
        "v_full": values, "v_hash": values[::-1], "v_double": values,
        "v_hybrid": values[3:] + values[:3], "price": list(_NUMBERS),
        "label": [float(i % 2) for i in range(len(values))],
    }  # fmt: skip
    vocabularies = {"v_full": list(_VOCAB), "v_hybrid": list(_VOCAB)}
    boundaries = {"price": list(_BOUNDARIES)}
    xf = FeatureTransform(spec, vocabularies=vocabularies, boundaries=boundaries)
    tensors = {k: tf.constant(_array(v).tolist()) for k, v in inputs.items()}
    expected = {k: v.numpy().tolist() for k, v in xf(tensors).items()}
    buckets = {
        str(b): {f"h{s + 1}": hash_values(values, b, s).tolist() for s in (0, 1)}
        for b in _BUCKET_COUNTS
    }
    return {
        "comment": COMMAND,
        "hash_keys": [list(k) for k in HASH_KEYS],
        "buckets": {"values": values, **buckets},
        "spec": spec.to_dict(),
        "vocabularies": vocabularies,
        "boundaries": boundaries,
        "inputs": {
            k: [None if _is_nan(x) else x for x in v] for k, v in inputs.items()
        },
        "expected": expected,
    }


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def write(path: str | pathlib.Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(build_golden(), f, indent=1, ensure_ascii=True)
        f.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.tools.golden --write PATH``; returns 0, or 2 on a bad path."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.tools.golden", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--write", required=True, metavar="PATH", help="output file")
    args = parser.parse_args(argv)
    parent = pathlib.Path(args.write).resolve().parent
    if not parent.is_dir():
        parser.error(f"--write {args.write}: no such directory {parent}")
    write(args.write)
    print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
