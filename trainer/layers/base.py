"""The protocol every compressed embedding layer implements, plus tiny shared helpers.

A layer that implements :class:`CompactEmbedding` can say how many bits it needs
at serving time (MGQE, Kang et al. 2020, Table 1), export the arrays a server would hold,
and look ids up in those arrays with plain NumPy. The NumPy lookup is the reference
the tests compare the Keras forward pass against, for every id.

Serving-time id convention shared by all layers: ids outside ``[0, num_rows)`` never
raise; they are mapped to the last row (for dictionary treatments that is the OOV row
``V``; for hash tables, bucket ``B - 1``). Preprocessing never produces such ids; the
rule only makes serving total.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol, runtime_checkable

import numpy as np

FLOAT_BITS = 32


@runtime_checkable
class CompactEmbedding(Protocol):
    """What the trainer, exporter and size report need from an embedding layer.

    Example:
        >>> layer = FullEmbedding(num_rows=5, output_dim=4)   # doctest: +SKIP
        >>> isinstance(layer, CompactEmbedding)                # doctest: +SKIP
        True
    """

    def serving_bits(self) -> int:
        """Bits needed to serve the layer (Kang et al. 2020, Table 1)."""
        ...

    def export_compact(self) -> dict[str, np.ndarray]:
        """The arrays a server holds, by name (tables, codes, centroids, ...)."""
        ...

    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy lookup of ``ids`` in ``arrays`` (from :meth:`export_compact`).

        Must equal the layer's forward pass on the same ids (ids clipped as described
        in the module docstring).
        """
        ...


class CompactEmbeddingMixin(abc.ABC):
    """Abstract base spelling out :class:`CompactEmbedding` for concrete layers.

    Mix it in *after* ``keras.layers.Layer``:
    ``class FullEmbedding(keras.layers.Layer, CompactEmbeddingMixin)``.

    Example:
        >>> arrays = layer.export_compact()                     # doctest: +SKIP
        >>> np.allclose(layer.compact_lookup(arrays, ids), layer(ids))  # doctest: +SKIP
        True
    """

    @abc.abstractmethod
    def serving_bits(self) -> int:
        """Bits needed to serve the layer (Kang et al. 2020, Table 1)."""

    @abc.abstractmethod
    def export_compact(self) -> dict[str, np.ndarray]:
        """The arrays a server holds, by name."""

    @abc.abstractmethod
    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy reference lookup of ``ids`` in ``arrays``."""


def check_positive(name: str, value: Any) -> int:
    """Returns ``value`` if it is an int > 0, else raises naming the argument.

    Args:
        name: Argument name, shown in backticks in the message.
        value: The value to check.

    Returns:
        ``value`` as an ``int``.

    Raises:
        ValueError: e.g. "`num_buckets` must be > 0. Received: 0".

    Example:
        >>> check_positive("num_buckets", 8)
        8
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"`{name}` must be > 0. Received: {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Returns ``value`` if it is one of ``choices``, else raises naming the argument.

    Example:
        >>> check_choice("combiner", "sum", ("sum", "concat"))
        'sum'
    """
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. Received: {value!r}"
        )
    return str(value)


def clip_ids_np(ids: np.ndarray, num_rows: int) -> np.ndarray:
    """NumPy twin of :func:`clip_ids`: ids outside ``[0, n)`` -> ``n - 1``.

    Example:
        >>> clip_ids_np(np.array([-3, 0, 9]), 5).tolist()
        [4, 0, 4]
    """
    ids = np.asarray(ids).astype(np.int64)
    return np.where((ids < 0) | (ids >= num_rows), num_rows - 1, ids)


def clip_ids(ids: Any, num_rows: int) -> Any:
    """Backend-agnostic id guard: ids outside ``[0, num_rows)`` -> ``num_rows - 1``.

    Args:
        ids: Integer tensor of any shape.
        num_rows: Rows in the table the ids index.

    Returns:
        An int32 tensor of the same shape, every entry a valid row.

    Example:
        >>> clip_ids(keras.ops.array([-1, 2, 7]), 5)   # doctest: +SKIP
        [4, 2, 4]
    """
    from keras import ops  # lazy: keeps this module importable without a backend

    # Compare in the input dtype first so int64 ids >= 2**31 are caught before the cast.
    bad = ops.logical_or(ops.less(ids, 0), ops.greater_equal(ids, num_rows))
    safe = ops.where(bad, ops.full_like(ids, num_rows - 1), ids)
    return ops.cast(safe, "int32")
