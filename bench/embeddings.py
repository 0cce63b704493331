"""Training throughput of each embedding layer inside a small CTR model.

Each layer kind embeds ``--features`` categorical features (one layer per feature,
vocabulary sizes from ``--rows``) into a ``d``-wide vector; the concatenation feeds a
2-layer MLP with a logistic loss, trained with Adagrad. The bench measures forward +
backward + update examples/s per layer kind, against the full embedding measured in the
same run. Ids follow a Zipf(1) law over rows sorted by frequency (id 0 most popular), so
MGQE's default 10 % head carries most of the traffic, as in real logs.

To even out load from other processes, the layers are timed round-robin (``--rounds``
rounds of ``--steps`` steps each, after ``--warmup`` steps) and the median round is
kept.

Targets from the issue: hybrid >= 0.95x full; MGQE (group-wise) >= 0.9x DPQ.

Usage:
    python bench/embeddings.py                      # TensorFlow backend, CPU
    python bench/embeddings.py --backend jax        # needs jax installed

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

LAYERS = (
    "full",
    "hashing",
    "double_hashing",
    "hybrid",
    "lrf",
    "dpq",
    "mgqe_masked",
    "mgqe_groupwise",
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backend", default="tensorflow", choices=["tensorflow", "jax", "torch"]
    )
    p.add_argument(
        "--rows",
        default="1000000,300000,100000,100000",
        help="vocabulary size of each feature (comma separated)",
    )
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--subspaces", type=int, default=8, help="D for DPQ/MGQE")
    p.add_argument("--centroids", default="256,64", help="K (DPQ uses the first)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _zipf_ids(rng: np.random.Generator, n: int, size: tuple[int, ...]) -> np.ndarray:
    """P(id = r) ~ 1 / (r + 1) on [0, n): log-uniform inverse transform."""
    u = rng.random(size)
    return np.minimum(np.floor(np.exp(u * np.log(n + 1.0))) - 1, n - 1).astype(np.int32)


def _hash(ids: np.ndarray, buckets: int, salt: int) -> np.ndarray:
    """A cheap deterministic stand-in for the salted SipHash of preprocessing."""
    x = (ids.astype(np.uint64) + np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    return ((x >> np.uint64(29)) % np.uint64(buckets)).astype(np.int32)


def _layer_ids(kind: str, ids: np.ndarray, n: int) -> np.ndarray:
    """Raw dictionary ids -> the ids the layer kind consumes (docs/ARCHITECTURE.md)."""
    if kind == "hashing":
        return _hash(ids, n // 2, 1)
    if kind == "double_hashing":
        return np.stack([_hash(ids, n // 4, 1), _hash(ids, n // 4, 2)], -1)
    if kind == "hybrid":
        k = n // 10
        rows = np.where(ids < k, ids, k).astype(np.int32)
        return np.stack([rows, _hash(ids, n // 8, 1), _hash(ids, n // 8, 2)], -1)
    return ids


def _make_layer(kind: str, n: int, args: argparse.Namespace, name: str) -> Any:
    from trainer.layers import (
        double_hashing_embedding,
        dpq_embedding,
        full_embedding,
        hashing_embedding,
        hybrid_embedding,
        low_rank_embedding,
        mgqe_embedding,
    )

    d, ks = args.dim, [int(k) for k in args.centroids.split(",")]
    makers: dict[str, Callable[[], Any]] = {
        "full": lambda: full_embedding.FullEmbedding(n, d, name=name),
        "hashing": lambda: hashing_embedding.HashingEmbedding(n // 2, d, name=name),
        "double_hashing": lambda: double_hashing_embedding.DoubleHashingEmbedding(
            n // 4, d, name=name
        ),
        "hybrid": lambda: hybrid_embedding.HybridEmbedding(
            n // 10, n // 8, d, name=name
        ),
        "lrf": lambda: low_rank_embedding.LowRankEmbedding(
            n, d, rank=3 * d // 4, name=name
        ),
        "dpq": lambda: dpq_embedding.DPQEmbedding(
            n, d, args.subspaces, ks[0], name=name
        ),
        "mgqe_masked": lambda: mgqe_embedding.MGQEEmbedding(
            n, d, args.subspaces, ks, lookup="masked", name=name
        ),
        "mgqe_groupwise": lambda: mgqe_embedding.MGQEEmbedding(
            n, d, args.subspaces, ks, lookup="groupwise", name=name
        ),
    }
    return makers[kind]()


def _build_model(kind: str, rows: list[int], args: argparse.Namespace) -> Any:
    import keras

    inputs, embedded = [], []
    for f, n in enumerate(rows):
        shape = {"double_hashing": (2,), "hybrid": (3,)}.get(kind, ())
        x = keras.Input(shape=shape, dtype="int32", name=f"f{f}")
        inputs.append(x)
        embedded.append(_make_layer(kind, n, args, name=f"{kind}_{f}")(x))
    h = keras.layers.Dense(64, activation="relu")(keras.layers.Concatenate()(embedded))
    return keras.Model(inputs, keras.layers.Dense(1)(h), name=kind)


def _train_step(model: Any) -> Callable[[list[Any], Any], Any]:
    """One forward + backward + Adagrad update; a tf.function on the TF backend."""
    import keras

    optimizer = keras.optimizers.Adagrad(learning_rate=0.05)
    if keras.backend.backend() != "tensorflow":
        model.compile(
            optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True)
        )
        return lambda x, y: model.train_on_batch(x, y)
    import tensorflow as tf

    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def step(x: list[Any], y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Builds every model, times them round-robin and returns the figures."""
    import keras

    keras.utils.set_random_seed(args.seed)
    rows = [int(r) for r in args.rows.split(",")]
    kinds = [k for k in args.layers.split(",") if k]
    unknown = sorted(set(kinds) - set(LAYERS))
    if unknown or "full" not in kinds:
        raise SystemExit(f"--layers must include 'full' and use {LAYERS}; got {kinds}")
    rng = np.random.default_rng(args.seed)
    num_batches = 8  # varied batches: group sizes change from step to step
    raw = [[_zipf_ids(rng, n, (args.batch,)) for n in rows] for _ in range(num_batches)]
    labels = [rng.integers(0, 2, size=(args.batch, 1)).astype(np.float32) for _ in raw]
    steps, batches = {}, {}
    for kind in kinds:
        model = _build_model(kind, rows, args)
        batches[kind] = [
            [_layer_ids(kind, ids, n) for ids, n in zip(batch, rows, strict=True)]
            for batch in raw
        ]
        steps[kind] = _train_step(model)
        for i in range(args.warmup):
            steps[kind](batches[kind][i % num_batches], labels[i % num_batches])
    timings: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds:
            start = time.perf_counter()
            for i in range(r * args.steps, (r + 1) * args.steps):
                loss = steps[kind](
                    batches[kind][i % num_batches], labels[i % num_batches]
                )
            float(np.asarray(loss))  # wait for the last step
            timings[kind].append(
                args.steps * args.batch / (time.perf_counter() - start)
            )
    throughput = {k: statistics.median(v) for k, v in timings.items()}
    ratio = {k: v / throughput["full"] for k, v in throughput.items()}
    result: dict[str, Any] = {
        "backend": keras.backend.backend(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "config": {
            k: getattr(args, k)
            for k in (
                "rows",
                "dim",
                "batch",
                "subspaces",
                "centroids",
                "steps",
                "rounds",
            )
        },
        "examples_per_s": {k: round(v, 1) for k, v in throughput.items()},
        "examples_per_s_best": {k: round(max(v), 1) for k, v in timings.items()},
        "ratio_to_full": {k: round(v, 3) for k, v in ratio.items()},
    }
    if "dpq" in throughput:
        for kind in ("mgqe_masked", "mgqe_groupwise"):
            if kind in throughput:
                result[f"{kind}_over_dpq"] = round(
                    throughput[kind] / throughput["dpq"], 3
                )
    targets = {}
    if "hybrid" in ratio:
        targets["hybrid >= 0.95x full"] = ratio["hybrid"] >= 0.95
    if "mgqe_groupwise_over_dpq" in result:
        targets["mgqe_groupwise >= 0.9x dpq"] = result["mgqe_groupwise_over_dpq"] >= 0.9
    result["targets_met"] = targets
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # The backend must be chosen before keras is first imported.
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # CPU figures
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if (
        "keras" in sys.modules
        and sys.modules["keras"].backend.backend() != args.backend
    ):
        raise SystemExit("keras was imported before the backend could be set")
    if args.backend != "tensorflow":
        import importlib.util

        if importlib.util.find_spec(args.backend) is None:
            raise SystemExit(
                f"--backend {args.backend}: the {args.backend!r} package is not "
                f"installed (pip install {args.backend}); the TensorFlow backend needs "
                "nothing extra."
            )
    result = run(args)
    for kind, value in result["examples_per_s"].items():
        print(
            f"{kind:16s} {value:12.0f} examples/s  "
            f"{result['ratio_to_full'][kind]:6.3f}x full"
        )
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
