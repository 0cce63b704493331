"""ScalarQuantizedEmbedding: post-training b-bit per-dimension quantization (SQ)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.layers.base import (
    FLOAT_BITS,
    CompactEmbeddingMixin,
    check_positive,
    clip_ids,
    clip_ids_np,
)

MAX_BITS = 16


def code_dtype(bits: int) -> str:
    """``"uint8"`` for ``bits <= 8``, else ``"uint16"``."""
    return "uint8" if bits <= 8 else "uint16"


def quantize_table(
    table: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column MIN_COMBINED quantization of a float table.

    Column j is split into ``2^b - 1`` even steps between its min ``m_j`` and max
    ``M_j`` (``2^b`` levels, both ends exact): ``code = round((x - m) / s)`` with
    ``s = (M - m) / (2^b - 1)``; constant columns get code 0. Same mapping as
    ``tf.quantization.quantize(mode="MIN_COMBINED")`` with round-to-nearest, per
    column.

    Args:
        table: ``(n, d)`` floats.
        bits: b in ``[1, 16]``.

    Returns:
        ``(codes (n, d) uint8/uint16, minimums (d,) float32, maximums (d,) float32)``.

    Example:
        >>> codes, lo, hi = quantize_table(np.array([[0.0], [1.0], [0.5]]), 1)
        >>> codes.ravel().tolist(), lo.tolist(), hi.tolist()
        ([0, 1, 0], [0.0], [1.0])
    """
    _check_bits(bits)
    table = np.asarray(table, dtype=np.float32)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError(
            f"`table` must be a non-empty 2-D array. Received shape: {table.shape}"
        )
    lo, hi = table.min(axis=0), table.max(axis=0)
    step = _step(lo, hi, bits)
    safe = np.where(step > 0, step, 1.0)
    codes = np.where(step > 0, np.rint((table - lo) / safe), 0.0)
    codes = np.clip(codes, 0, 2**bits - 1).astype(code_dtype(bits))
    return codes, lo.astype(np.float32), hi.astype(np.float32)


def dequantize(
    codes: np.ndarray, minimums: np.ndarray, maximums: np.ndarray, bits: int
) -> np.ndarray:
    """``m + code · (M - m) / (2^b - 1)`` in float32 (NumPy twin of ``call``)."""
    step = _step(minimums.astype(np.float32), maximums.astype(np.float32), bits)
    return (minimums + codes.astype(np.float32) * step).astype(np.float32)


def _step(lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    return ((hi - lo) / np.float32(2**bits - 1)).astype(np.float32)


def _check_bits(bits: int) -> None:
    check_positive("bits", bits)
    if bits > MAX_BITS:
        raise ValueError(f"`bits` must be in [1, {MAX_BITS}]. Received: {bits}")


@keras.saving.register_keras_serializable(package="compactrec")
class ScalarQuantizedEmbedding(keras.layers.Layer, CompactEmbeddingMixin):
    """Serves a trained table from b-bit codes: ``E[i, j] ≈ m_j + code[i, j] · s_j``.

    Built with :meth:`from_table` after training (no trainable weights). Ids outside
    ``[0, num_rows)`` are served from the last row. Serving size: ``n·d·b`` bits for
    the codes (MGQE Table 1) **plus ``2·d·32``** for the per-column min/max, which
    Table 1 omits (with it, the paper's printed GMF SQ size of 25.0 % is reproduced).

    Args:
        num_rows: n.
        output_dim: d.
        bits: b in ``[1, 16]``; codes are uint8 for b <= 8, else uint16.
        **kwargs: Base layer arguments.

    Example:
        >>> sq = ScalarQuantizedEmbedding.from_table(np.random.rand(10, 4), bits=8)
        >>> sq(np.array([0, 9])).shape
        TensorShape([2, 4])
    """

    def __init__(
        self, num_rows: int, output_dim: int, bits: int = 8, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.num_rows = check_positive("num_rows", num_rows)
        self.output_dim = check_positive("output_dim", output_dim)
        _check_bits(bits)
        self.bits = int(bits)

    @classmethod
    def from_table(
        cls, table: np.ndarray, bits: int = 8, **kwargs: Any
    ) -> ScalarQuantizedEmbedding:
        """Quantizes a trained ``(n, d)`` table into a built layer.

        See :func:`quantize_table`.
        """
        codes, lo, hi = quantize_table(table, bits)
        layer = cls(
            num_rows=codes.shape[0], output_dim=codes.shape[1], bits=bits, **kwargs
        )
        layer.build()
        layer.codes.assign(codes)
        layer.minimums.assign(lo)
        layer.maximums.assign(hi)
        return layer

    def build(self, input_shape: Any = None) -> None:
        d = self.output_dim
        self.codes = self.add_weight(
            name="codes", shape=(self.num_rows, d), dtype=code_dtype(self.bits),
            initializer="zeros", trainable=False,
        )  # fmt: skip
        self.minimums = self.add_weight(
            name="minimums",
            shape=(d,),
            dtype="float32",
            initializer="zeros",
            trainable=False,
        )
        self.maximums = self.add_weight(
            name="maximums",
            shape=(d,),
            dtype="float32",
            initializer="zeros",
            trainable=False,
        )
        self.built = True

    def call(self, ids: Any) -> Any:
        """Integer ids of any shape -> ``ids.shape + (output_dim,)`` dequantized."""
        codes = ops.take(self.codes, clip_ids(ids, self.num_rows), axis=0)
        step = (self.maximums - self.minimums) / float(2**self.bits - 1)
        return self.minimums + ops.cast(codes, "float32") * step

    def serving_bits(self) -> int:
        """``n·d·b + 2·d·32`` (codes + per-column min and max)."""
        return (
            self.num_rows * self.output_dim * self.bits
            + 2 * self.output_dim * FLOAT_BITS
        )

    def export_compact(self) -> dict[str, np.ndarray]:
        """``{"codes": (n, d) uint8/uint16, "minimums": (d,), "maximums": (d,)}``."""
        if not self.built:
            self.build()
        return {
            "codes": ops.convert_to_numpy(self.codes).astype(code_dtype(self.bits)),
            "minimums": ops.convert_to_numpy(self.minimums).astype(np.float32),
            "maximums": ops.convert_to_numpy(self.maximums).astype(np.float32),
        }

    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy dequantized gather (:func:`dequantize` of the selected codes)."""
        codes = arrays["codes"][clip_ids_np(ids, self.num_rows)]
        return dequantize(codes, arrays["minimums"], arrays["maximums"], self.bits)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_rows": self.num_rows,
            "output_dim": self.output_dim,
            "bits": self.bits,
        }
