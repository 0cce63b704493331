"""Examples/s of one training step: keras.optimizers.Adagrad vs trainer's SparseAdagrad.

The model is the embedding part of a CTR model: ``features`` tables of ``rows x dim``
(Keras variables), one id per feature per example, logit = sum of all embedding
entries, logistic loss. Both optimizers run in the same process on equally initialised
tables, inside a ``tf.function`` step; the Keras one updates every row of every table
per step, ours only the rows in the batch.

Usage::

    python bench/optimizers.py --rows 1000000 --seconds 20

The last line of stdout is one JSON object with examples_per_s per optimizer and the
ratio sparse / dense.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table")
    parser.add_argument("--features", type=int, default=10, help="number of tables")
    parser.add_argument("--dim", type=int, default=16, help="embedding width")
    parser.add_argument("--batch", type=int, default=512, help="examples per step")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="timed seconds per optimizer"
    )
    parser.add_argument("--min-steps", type=int, default=3, help="timed steps at least")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _make_step(tables: list[Any], optimizer: Any) -> Callable[..., Any]:
    import tensorflow as tf

    @tf.function
    def step(ids: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            embedded = [tf.gather(t.value, ids[:, i]) for i, t in enumerate(tables)]
            logits = tf.reduce_sum(tf.add_n(embedded), axis=1)
            loss = tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        grads = tape.gradient(loss, [t.value for t in tables])
        optimizer.apply_gradients(list(zip(grads, tables, strict=True)))
        return loss

    return step


def _measure(
    name: str, build_optimizer: Callable[[], Any], args: argparse.Namespace
) -> float:
    """Builds fresh tables, warms up (trace + slots), then times steps."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(args.seed)
    tables = [
        keras.Variable(
            keras.random.normal((args.rows, args.dim), stddev=0.01, seed=args.seed + i),
            name=f"table_{i}",
        )
        for i in range(args.features)
    ]
    step = _make_step(tables, build_optimizer())
    batches = [
        (
            tf.constant(rng.integers(0, args.rows, size=(args.batch, args.features))),
            tf.constant((rng.random(args.batch) < 0.2).astype(np.float32)),
        )
        for _ in range(8)
    ]
    step(*batches[0]).numpy()  # trace and create slots
    steps, start = 0, time.perf_counter()
    while steps < args.min_steps or time.perf_counter() - start < args.seconds:
        loss = step(*batches[steps % len(batches)])
        steps += 1
    loss.numpy()
    elapsed = time.perf_counter() - start
    print(f"{name}: {steps} steps in {elapsed:.2f}s", file=sys.stderr)
    del tables, step
    gc.collect()
    return steps * args.batch / elapsed


def main(argv: list[str] | None = None) -> int:
    """Runs both measurements and prints the JSON summary line."""
    args = _parse_args(argv)
    import keras

    from trainer.training.optimizers import SparseAdagrad

    dense = _measure(
        "keras.optimizers.Adagrad",
        lambda: keras.optimizers.Adagrad(learning_rate=0.05),
        args,
    )
    sparse = _measure("SparseAdagrad", lambda: SparseAdagrad(learning_rate=0.05), args)
    summary = {
        "rows": args.rows,
        "features": args.features,
        "dim": args.dim,
        "batch": args.batch,
        "keras_adagrad_examples_per_s": round(dense, 1),
        "sparse_adagrad_examples_per_s": round(sparse, 1),
        "ratio": round(sparse / dense, 2),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
