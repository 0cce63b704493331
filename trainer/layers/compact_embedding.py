"""Serving-side codebook embedding built from exported DPQ / MGQE arrays.

After training, DPQ (Chen, Li & Sun, ICML 2020) and MGQE (Kang et al. 2020) throw the
query table away and keep only integer **codes** (``n x D``) and the **centroid** table;
serving is a gather, ``out_j = C[j, code_j]`` (DPQ, Chen, Li & Sun 2020). This module holds

* the export format shared by :class:`~trainer.layers.dpq_embedding.DPQEmbedding` and
  :class:`~trainer.layers.mgqe_embedding.MGQEEmbedding` (:func:`make_compact_arrays`),
* the bit packing of codes at ``ceil(log2 K_i)`` bits (:func:`pack_codes`,
  :func:`unpack_codes`),
* the NumPy reference lookup (:func:`lookup_numpy`), and
* :class:`CompactCodebookEmbedding`, the Keras layer that serves those arrays inside the
  exported SavedModel.

Export format (``dict[str, np.ndarray]``), with ``m`` tiers (DPQ: ``m = 1``):

* ``codes`` ``(n, D_max)`` uint8 (every K_i <= 256) or uint16: row r's local codes,
  ``0 <= code < K_tier``; columns ``>= D_tier`` are 0 (only unshared variable D has
  them).
* ``packed_codes`` uint8: the same codes, row by row in row order, row r taking
  ``D_t * b_t`` bits (``b_t = ceil(log2 K_t)``), least significant bit first, plus two
  zero pad bytes so that any code can be read as three bytes.
* ``row_tier`` ``(n,)`` int32; ``tier_num_subspaces``, ``tier_num_centroids``,
  ``tier_code_bits``, ``tier_centroid_offsets`` ``(m,)`` int32.
* ``centroids`` ``(D, K_total, s)`` float32 when every tier has the same D (tier t uses
  columns ``offset_t .. offset_t + K_t - 1``), else ``centroids_<t>`` ``(D_t, K, d /
  D_t)``.

The row tier and the bit offsets are not counted in the serving size, as in MGQE's Table
1, where ids are sorted by frequency so that the tier follows from the id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.layers import base

_PAD_BYTES = 2


def code_dtype(max_centroids: int) -> type[np.unsignedinteger]:
    """uint8 when every code fits in a byte (K <= 256), else uint16 (K <= 2^16).

    Example:
        >>> code_dtype(256).__name__, code_dtype(257).__name__
        ('uint8', 'uint16')
    """
    if max_centroids > 2**16:
        raise ValueError(f"`num_centroids` must be <= 65536. Received: {max_centroids}")
    return np.uint8 if max_centroids <= 256 else np.uint16


def row_bit_offsets(
    row_tier: np.ndarray,
    tier_num_subspaces: Sequence[int],
    tier_code_bits: Sequence[int],
) -> np.ndarray:
    """Bit position where each row's codes start in the packed stream (int64, ``(n,)``).

    Example:
        >>> row_bit_offsets(np.array([0, 1, 1]), [2, 2], [8, 6]).tolist()
        [0, 16, 28]
    """
    row_bits = (np.asarray(tier_num_subspaces) * np.asarray(tier_code_bits))[row_tier]
    return np.concatenate([[0], np.cumsum(row_bits, dtype=np.int64)[:-1]]).astype(
        np.int64
    )


def pack_codes(
    codes: np.ndarray,
    row_tier: np.ndarray,
    tier_num_subspaces: Sequence[int],
    tier_code_bits: Sequence[int],
) -> np.ndarray:
    """Packs row r's first ``D_t`` codes at ``b_t`` bits each, rows in order, LSB first.

    Args:
        codes: ``(n, D_max)`` non-negative integer codes, ``code < 2**b_t``.
        row_tier: ``(n,)`` tier of each row.
        tier_num_subspaces: ``D_t`` per tier.
        tier_code_bits: ``b_t`` per tier (at most 16).

    Returns:
        A uint8 stream of ``ceil(total_bits / 8) + 2`` bytes.

    Example:
        >>> pack_codes(np.array([[1, 2], [3, 0]]), np.array([0, 0]), [2], [2]).tolist()
        [57, 0, 0]
    """
    codes = np.asarray(codes, dtype=np.int64)
    row_tier = np.asarray(row_tier, dtype=np.int64)
    bits = np.asarray(tier_code_bits, dtype=np.int64)
    subspaces = np.asarray(tier_num_subspaces, dtype=np.int64)
    starts = row_bit_offsets(row_tier, subspaces, bits)
    total = (
        int(starts[-1] + subspaces[row_tier[-1]] * bits[row_tier[-1]])
        if len(codes)
        else 0
    )
    out = np.zeros((total + 7) // 8 + _PAD_BYTES, dtype=np.int64)
    cols = np.arange(codes.shape[1])
    used = cols[None, :] < subspaces[row_tier][:, None]
    pos = (starts[:, None] + cols[None, :] * bits[row_tier][:, None])[used]
    value = codes[used] << (pos & 7)  # at most 16 + 7 bits: three bytes
    for shift in range(3):
        np.bitwise_or.at(out, (pos >> 3) + shift, (value >> (8 * shift)) & 0xFF)
    return out.astype(np.uint8)


def unpack_codes(
    packed: np.ndarray,
    starts: np.ndarray,
    tiers: np.ndarray,
    tier_num_subspaces: Sequence[int],
    tier_code_bits: Sequence[int],
    width: int,
) -> np.ndarray:
    """Reads ``(len(starts), width)`` codes back from :func:`pack_codes` output.

    Columns at or past a row's ``D_t`` come back as 0.

    Example:
        >>> packed = np.array([57, 0, 0], np.uint8)
        >>> starts, tiers = np.array([0, 4]), np.array([0, 0])
        >>> unpack_codes(packed, starts, tiers, [2], [2], 2).tolist()
        [[1, 2], [3, 0]]
    """
    b = np.asarray(tier_code_bits, dtype=np.int64)[tiers][:, None]
    cols = np.arange(width, dtype=np.int64)[None, :]
    pos = np.asarray(starts, dtype=np.int64)[:, None] + cols * b
    byte = np.minimum(pos >> 3, len(packed) - 3)
    stream = np.asarray(packed, dtype=np.int64)
    word = stream[byte] | (stream[byte + 1] << 8) | (stream[byte + 2] << 16)
    code = (word >> (pos & 7)) & ((1 << b) - 1)
    used = cols < np.asarray(tier_num_subspaces, dtype=np.int64)[tiers][:, None]
    return np.where(used, code, 0)


def make_compact_arrays(
    codes: np.ndarray,
    row_tier: np.ndarray,
    tier_num_subspaces: Sequence[int],
    tier_num_centroids: Sequence[int],
    centroids: np.ndarray | Sequence[np.ndarray],
    tier_centroid_offsets: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Assembles the export dict described in the module docstring.

    Args:
        codes: ``(n, D_max)`` local codes.
        row_tier: ``(n,)`` tier per row.
        tier_num_subspaces: ``D_t`` per tier.
        tier_num_centroids: ``K_t`` per tier.
        centroids: One ``(D, K_total, s)`` table shared by the tiers, or one
            ``(D_t, K, d / D_t)`` table per tier.
        tier_centroid_offsets: First centroid column of each tier in a shared table.

    Returns:
        The arrays, codes in the smallest unsigned dtype and centroids as float32.
    """
    m = len(tier_num_centroids)
    bits = [(int(k) - 1).bit_length() for k in tier_num_centroids]
    row_tier = np.asarray(row_tier, dtype=np.int32)
    codes = np.asarray(codes)
    arrays: dict[str, np.ndarray] = {
        "codes": codes.astype(code_dtype(max(tier_num_centroids))),
        "packed_codes": pack_codes(codes, row_tier, tier_num_subspaces, bits),
        "row_tier": row_tier,
        "tier_num_subspaces": np.asarray(tier_num_subspaces, dtype=np.int32),
        "tier_num_centroids": np.asarray(tier_num_centroids, dtype=np.int32),
        "tier_code_bits": np.asarray(bits, dtype=np.int32),
        "tier_centroid_offsets": np.asarray(
            tier_centroid_offsets or [0] * m, dtype=np.int32
        ),
    }
    if isinstance(centroids, np.ndarray):
        arrays["centroids"] = np.asarray(centroids, dtype=np.float32)
    else:
        for t, table in enumerate(centroids):
            arrays[f"centroids_{t}"] = np.asarray(table, dtype=np.float32)
    return arrays


def compact_serving_bits(arrays: dict[str, np.ndarray]) -> int:
    """Table 1 bits of an export: packed code bits plus 32 bits per centroid float.

    Equals the exporting layer's ``serving_bits()``.
    """
    subspaces = arrays["tier_num_subspaces"].astype(np.int64)
    bits = arrays["tier_code_bits"].astype(np.int64)
    tiers = arrays["row_tier"].astype(np.int64)
    code_part = int(np.sum((subspaces * bits)[tiers]))
    floats = sum(int(v.size) for k, v in arrays.items() if k.startswith("centroids"))
    return code_part + base.FLOAT_BITS * floats


def lookup_numpy(
    arrays: dict[str, np.ndarray], ids: np.ndarray, packed: bool = False
) -> np.ndarray:
    """NumPy reference lookup: ``ids`` (any shape) -> ``ids.shape + (d,)`` float32.

    Ids outside ``[0, n)`` map to the last row
    (:func:`trainer.layers.base.clip_ids_np`).

    Args:
        arrays: Output of :func:`make_compact_arrays`.
        ids: Integer ids.
        packed: Decode from ``packed_codes`` instead of ``codes``.

    Returns:
        The embeddings.
    """
    ids = np.asarray(ids)
    row_tier = arrays["row_tier"]
    flat = base.clip_ids_np(ids.reshape(-1), len(row_tier))
    tiers = row_tier[flat].astype(np.int64)
    subspaces = arrays["tier_num_subspaces"]
    width = arrays["codes"].shape[1]
    if packed:
        starts = row_bit_offsets(row_tier, subspaces, arrays["tier_code_bits"])[flat]
        codes = unpack_codes(
            arrays["packed_codes"],
            starts,
            tiers,
            subspaces,
            arrays["tier_code_bits"],
            width,
        )
    else:
        codes = arrays["codes"][flat].astype(np.int64)
    if "centroids" in arrays:
        table = arrays["centroids"]
        absolute = codes + arrays["tier_centroid_offsets"][tiers][:, None]
        out = table[np.arange(table.shape[0])[None, :], absolute].reshape(len(flat), -1)
    else:
        dim = arrays["centroids_0"].shape[0] * arrays["centroids_0"].shape[2]
        out = np.zeros((len(flat), dim), dtype=np.float32)
        for t in range(len(subspaces)):
            table = arrays[f"centroids_{t}"]
            rows = tiers == t
            sel = codes[rows][:, : table.shape[0]]
            out[rows] = table[np.arange(table.shape[0])[None, :], sel].reshape(-1, dim)
    return out.reshape(ids.shape + (out.shape[-1],)).astype(np.float32)


@keras.saving.register_keras_serializable(package="compactrec")
class CompactCodebookEmbedding(keras.layers.Layer):
    """Serves DPQ / MGQE embeddings from integer codes and a centroid table.

    The layer holds the exported arrays as non-trainable weights (codes as uint8/uint16,
    or bit-packed at ``ceil(log2 K_i)`` bits) and reproduces the trained layer's
    inference output for every id with one gather of codes and one gather of centroids
    (DPQ, Chen, Li & Sun 2020; MGQE, Kang et al. 2020,
    Table 1).

    Build it with :meth:`from_arrays`; the constructor takes only the shapes, so that
    ``from_config`` can rebuild it before ``.keras`` loading restores the weights.

    Args:
        num_rows: n.
        output_dim: d.
        tier_num_subspaces: ``D_t`` per tier.
        tier_num_centroids: ``K_t`` per tier.
        tier_centroid_offsets: First centroid column of each tier in the shared table,
            or None for one table per tier (MGQE unshared variable D).
        total_centroids: Columns of the shared table (None for one table per tier).
        packed: Serve from the bit-packed stream instead of byte-aligned codes.
        num_packed_bytes: Length of the packed stream (``packed=True`` only).
        **kwargs: Keras layer arguments.

    Example:
        >>> arrays = DPQEmbedding(100, 8, 4, 16).export_compact()   # doctest: +SKIP
        >>> serve = CompactCodebookEmbedding.from_arrays(arrays)     # doctest: +SKIP
        >>> serve(np.array([3, 7])).shape                            # doctest: +SKIP
        TensorShape([2, 8])
    """

    def __init__(
        self,
        num_rows: int,
        output_dim: int,
        tier_num_subspaces: Sequence[int],
        tier_num_centroids: Sequence[int],
        tier_centroid_offsets: Sequence[int] | None = None,
        total_centroids: int | None = None,
        packed: bool = False,
        num_packed_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_rows = base.check_positive("num_rows", num_rows)
        self.output_dim = base.check_positive("output_dim", output_dim)
        self.tier_num_subspaces = [
            base.check_positive("tier_num_subspaces", int(x))
            for x in tier_num_subspaces
        ]
        self.tier_num_centroids = [int(k) for k in tier_num_centroids]
        if len(self.tier_num_subspaces) != len(self.tier_num_centroids):
            raise ValueError(
                "`tier_num_subspaces` and `tier_num_centroids` need one entry per "
                "tier. "
                f"Received: {self.tier_num_subspaces}, {self.tier_num_centroids}"
            )
        if any(k < 2 or k > 2**16 for k in self.tier_num_centroids):
            raise ValueError(
                "`tier_num_centroids` must be in [2, 65536]. "
                f"Received: {self.tier_num_centroids}"
            )
        self.tier_centroid_offsets = (
            None
            if tier_centroid_offsets is None
            else [int(x) for x in tier_centroid_offsets]
        )
        self.total_centroids = None if total_centroids is None else int(total_centroids)
        if (self.tier_centroid_offsets is None) != (self.total_centroids is None):
            raise ValueError(
                "`tier_centroid_offsets` and `total_centroids` go together (shared "
                "table). "
                f"Received: {tier_centroid_offsets}, {total_centroids}"
            )
        self.packed = bool(packed)
        if self.packed:
            base.check_positive("num_packed_bytes", num_packed_bytes)
        self.num_packed_bytes = (
            None if num_packed_bytes is None else int(num_packed_bytes)
        )
        self.code_bits = [(k - 1).bit_length() for k in self.tier_num_centroids]
        self.code_width = max(self.tier_num_subspaces)

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], packed: bool = False, **kwargs: Any
    ) -> CompactCodebookEmbedding:
        """Builds the layer and loads ``arrays`` (from ``export_compact()``) into it.

        Args:
            arrays: The export dict (module docstring).
            packed: Serve from ``packed_codes`` (bit-packed) instead of ``codes``.
            **kwargs: Keras layer arguments (``name``, ...).

        Returns:
            A built layer.
        """
        shared = "centroids" in arrays
        row_tier = arrays["row_tier"]
        layer = cls(
            num_rows=len(row_tier),
            output_dim=(
                arrays["centroids"].shape[0] * arrays["centroids"].shape[2]
                if shared
                else arrays["centroids_0"].shape[0] * arrays["centroids_0"].shape[2]
            ),
            tier_num_subspaces=arrays["tier_num_subspaces"].tolist(),
            tier_num_centroids=arrays["tier_num_centroids"].tolist(),
            tier_centroid_offsets=arrays["tier_centroid_offsets"].tolist()
            if shared
            else None,
            total_centroids=arrays["centroids"].shape[1] if shared else None,
            packed=packed,
            num_packed_bytes=len(arrays["packed_codes"]) if packed else None,
            **kwargs,
        )
        layer.build(None)
        layer.row_tier.assign(row_tier.astype(np.int32))
        if packed:
            starts = row_bit_offsets(
                row_tier, layer.tier_num_subspaces, layer.code_bits
            )
            if len(arrays["packed_codes"]) * 8 >= 2**31:
                raise ValueError(
                    "packed codes past 2^31 bits need int64 offsets; use packed=False"
                )
            layer.packed_codes.assign(arrays["packed_codes"])
            layer.row_bit_offset.assign(starts.astype(np.int32))
        else:
            layer.codes.assign(arrays["codes"])
        for name, weight in layer._centroid_weights():
            weight.assign(arrays[name])
        return layer

    def _centroid_weights(self) -> list[tuple[str, Any]]:
        if self.total_centroids is not None:
            return [("centroids", self.centroids)]
        return [(f"centroids_{t}", w) for t, w in enumerate(self.tier_centroids)]

    def build(self, input_shape: Any = None) -> None:
        n = self.num_rows
        self.row_tier = self.add_weight(
            name="row_tier",
            shape=(n,),
            dtype="int32",
            initializer="zeros",
            trainable=False,
        )
        if self.packed:
            self.packed_codes = self.add_weight(
                name="packed_codes",
                shape=(self.num_packed_bytes,),
                dtype="uint8",
                initializer="zeros",
                trainable=False,
            )
            self.row_bit_offset = self.add_weight(
                name="row_bit_offset",
                shape=(n,),
                dtype="int32",
                initializer="zeros",
                trainable=False,
            )
        else:
            dtype = code_dtype(max(self.tier_num_centroids)).__name__
            self.codes = self.add_weight(
                name="codes",
                shape=(n, self.code_width),
                dtype=dtype,
                initializer="zeros",
                trainable=False,
            )
        if self.total_centroids is not None:
            d_sub = self.tier_num_subspaces[0]
            self.centroids = self.add_weight(
                name="centroids",
                shape=(d_sub, self.total_centroids, self.output_dim // d_sub),
                initializer="zeros",
                trainable=False,
            )
        else:
            self.tier_centroids = [
                self.add_weight(
                    name=f"centroids_{t}",
                    shape=(D, self.tier_num_centroids[t], self.output_dim // D),
                    initializer="zeros",
                    trainable=False,
                )
                for t, D in enumerate(self.tier_num_subspaces)
            ]
        self.built = True

    def _codes(self, ids: Any, tiers: Any) -> Any:
        if not self.packed:
            return ops.cast(ops.take(self.codes, ids, axis=0), "int32")
        bits = ops.take(ops.convert_to_tensor(self.code_bits, "int32"), tiers)[:, None]
        cols = ops.arange(self.code_width, dtype="int32")[None, :]
        pos = ops.take(self.row_bit_offset, ids)[:, None] + cols * bits
        byte = ops.minimum(ops.right_shift(pos, 3), self.num_packed_bytes - 3)
        stream = ops.cast(self.packed_codes, "int32")
        word = (
            ops.take(stream, byte)
            + ops.left_shift(ops.take(stream, byte + 1), 8)
            + ops.left_shift(ops.take(stream, byte + 2), 16)
        )
        mask = ops.left_shift(ops.ones_like(bits), bits) - 1
        code = ops.bitwise_and(ops.right_shift(word, ops.bitwise_and(pos, 7)), mask)
        used = (
            cols
            < ops.take(ops.convert_to_tensor(self.tier_num_subspaces, "int32"), tiers)[
                :, None
            ]
        )
        return ops.where(used, code, ops.zeros_like(code))

    def call(self, ids: Any) -> Any:
        """Integer ids of any shape -> ``ids.shape + (output_dim,)`` float32."""
        shape = ops.shape(ids)
        flat = ops.reshape(base.clip_ids(ids, self.num_rows), (-1,))
        tiers = ops.take(self.row_tier, flat)
        codes = self._codes(flat, tiers)
        if self.total_centroids is not None:
            d_sub, k_total = self.tier_num_subspaces[0], self.total_centroids
            offsets = ops.convert_to_tensor(self.tier_centroid_offsets, "int32")
            index = codes + ops.take(offsets, tiers)[:, None]
            index = index + ops.arange(d_sub, dtype="int32")[None, :] * k_total
            table = ops.reshape(
                self.centroids, (d_sub * k_total, self.output_dim // d_sub)
            )
            out = ops.reshape(ops.take(table, index, axis=0), (-1, self.output_dim))
        else:
            out = None
            for t, weight in enumerate(self.tier_centroids):
                D, k = self.tier_num_subspaces[t], self.tier_num_centroids[t]
                index = codes[:, :D] + ops.arange(D, dtype="int32")[None, :] * k
                table = ops.reshape(weight, (D * k, self.output_dim // D))
                out_t = ops.reshape(
                    ops.take(table, index, axis=0), (-1, self.output_dim)
                )
                out = (
                    out_t
                    if out is None
                    else ops.where((tiers == t)[:, None], out_t, out)
                )
        return ops.reshape(out, tuple(shape) + (self.output_dim,))

    def serving_bits(self) -> int:
        """Table 1 bits: ``sum_rows D_t ceil(log2 K_t)`` + 32 per centroid float.

        Equals :func:`compact_serving_bits` of the arrays it was built from, and the
        exporting DPQ / MGQE layer's ``serving_bits()``.
        """
        tiers = ops.convert_to_numpy(self.row_tier).astype(np.int64)
        per_tier = np.asarray(self.tier_num_subspaces, np.int64) * np.asarray(
            self.code_bits, np.int64
        )
        floats = sum(int(np.prod(w.shape)) for _, w in self._centroid_weights())
        return int(np.sum(per_tier[tiers])) + base.FLOAT_BITS * floats

    def compute_output_shape(
        self, input_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_rows": self.num_rows,
            "output_dim": self.output_dim,
            "tier_num_subspaces": list(self.tier_num_subspaces),
            "tier_num_centroids": list(self.tier_num_centroids),
            "tier_centroid_offsets": self.tier_centroid_offsets,
            "total_centroids": self.total_centroids,
            "packed": self.packed,
            "num_packed_bytes": self.num_packed_bytes,
        }
