"""Shared checks for embedding-layer tests (keras-rs ``TestCase`` style, as functions).

Every check asserts something that can fail: config equality after a
serialize/deserialize round trip, equal outputs after a ``.keras`` save/load, which
table rows receive gradient, and that the NumPy compact lookup equals the Keras
forward pass.

Example:
    >>> from tests.trainer.layers import testing
    >>> testing.assert_config_round_trip(layer)              # doctest: +SKIP
    >>> testing.assert_keras_save_round_trip(layer, ids, tmp_path)  # doctest: +SKIP
"""

from __future__ import annotations

import pathlib
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def assert_config_round_trip(layer: keras.layers.Layer) -> keras.layers.Layer:
    """Serializes and deserializes ``layer``; asserts same class and same config."""
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
    return restored


def assert_keras_save_round_trip(
    layer: keras.layers.Layer,
    ids: np.ndarray,
    tmp_path: pathlib.Path,
    atol: float = 0.0,
) -> keras.Model:
    """Wraps ``layer`` in a tiny model, saves it as ``.keras``, reloads and compares.

    Args:
        layer: The layer under test (built or not).
        ids: A batch of integer ids with the layer's input shape.
        tmp_path: Pytest temp dir.
        atol: Absolute tolerance of the output comparison.

    Returns:
        The reloaded model.
    """
    ids = np.asarray(ids)
    inputs = keras.Input(shape=ids.shape[1:], dtype=str(ids.dtype))
    model = keras.Model(inputs, layer(inputs))
    expected = keras.ops.convert_to_numpy(model(ids))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    got = keras.ops.convert_to_numpy(reloaded(ids))
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
    assert not np.allclose(expected, 0.0), (
        "outputs are all zero: the check would be vacuous"
    )
    return reloaded


def gradients(
    layer: keras.layers.Layer, ids: np.ndarray, seed: int = 0
) -> dict[str, np.ndarray]:
    """Dense gradient of ``sum(layer(ids) * w)`` (fixed random w) per trainable weight.

    Returns:
        ``{weight.name: gradient}`` with IndexedSlices densified.
    """
    ids = tf.constant(ids)
    with tf.GradientTape() as tape:
        out = layer(ids)
        w = tf.random.stateless_normal(tf.shape(out), seed=[seed, 1], dtype=out.dtype)
        loss = tf.reduce_sum(out * w)
    variables = layer.trainable_variables
    grads = tape.gradient(loss, variables)
    result = {}
    for var, g in zip(variables, grads, strict=True):
        dense = (
            np.zeros(var.shape, dtype=np.float32)
            if g is None
            else tf.convert_to_tensor(g)
        )
        result[var.name] = np.asarray(dense)
    return result


def rows_with_gradient(grad: np.ndarray) -> set[int]:
    """Rows of a (rows, cols) gradient that are not all zero."""
    return {int(r) for r in np.flatnonzero(np.any(grad != 0.0, axis=-1))}


def assert_compact_matches(layer: Any, ids: np.ndarray, atol: float = 1e-6) -> None:
    """``compact_lookup(export_compact(), ids)`` equals the forward pass on ``ids``."""
    expected = keras.ops.convert_to_numpy(layer(np.asarray(ids)))
    got = layer.compact_lookup(layer.export_compact(), np.asarray(ids))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


def assert_raises_naming(factory: Any, argument: str) -> None:
    """``factory()`` raises ValueError whose message names ``argument`` in backticks."""
    try:
        factory()
    except ValueError as e:
        assert f"`{argument}`" in str(e), str(e)
    else:
        raise AssertionError(f"no ValueError for invalid `{argument}`")
