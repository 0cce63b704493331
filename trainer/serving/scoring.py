"""Reads and scores a finished serving export of :mod:`trainer.serving.export`.

:func:`load_scorer` wraps the export's ``serving_default`` signature in a function from
raw events (the :func:`trainer.data.examples.table_to_raw` layout: object strings per
categorical, floats per numeric) to ``{"probability": (n,), "logit": (n,)}`` NumPy
arrays, calling the signature in batches; :func:`raw_tensor` converts one raw column to
the signature's dtype. :func:`read_export_metadata` reads ``export_metadata.json``,
whose presence marks an export that passed its check (:mod:`trainer.serving.checks`).

The names of the export layout that readers need live here (:data:`EXPORT_METADATA`,
:data:`EXTRA_ARTIFACTS`, :data:`SERVING_SIGNATURE`), so that :mod:`trainer.serving.export`,
:mod:`trainer.serving.checks` and :mod:`trainer.evaluation.evaluate` import them from one module
that imports none of them.

Example:
    >>> meta = read_export_metadata(export_dir)  # doctest: +SKIP
    >>> scores = load_scorer(export_dir)(raw)  # doctest: +SKIP
    >>> sorted(scores)  # doctest: +SKIP
    ['logit', 'probability']
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

EXPORT_METADATA = "export_metadata.json"
EXTRA_ARTIFACTS = os.path.join("assets.extra", "artifacts")
SERVING_SIGNATURE = "serving_default"

Scorer = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def raw_tensor(values: np.ndarray) -> tf.Tensor:
    """One raw column in the signature's dtype: strings -> tf.string, else float32."""
    values = np.asarray(values)
    if values.dtype == object or values.dtype.kind in "US":
        return tf.constant(
            [str(v) for v in values.tolist()], tf.string, shape=[len(values)]
        )
    return tf.constant(values.astype(np.float32))


def load_scorer(export_dir: str, batch_size: int = 8192) -> Scorer:
    """A function ``raw events -> {"probability", "logit"}`` over an export.

    Args:
        export_dir: A directory written by
            :func:`trainer.serving.export.export_serving_model`.
        batch_size: Events per signature call.

    Returns:
        ``scorer(raw)``; ``raw`` maps each feature name to an ``(n,)`` array (object
        strings or floats, as :func:`trainer.data.examples.table_to_raw` returns them).
    """
    loaded = tf.saved_model.load(export_dir)
    fn = loaded.signatures[SERVING_SIGNATURE]
    names = sorted(fn.structured_input_signature[1])

    def scorer(raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(raw[names[0]])
        parts: dict[str, list[np.ndarray]] = {"probability": [], "logit": []}
        for start in range(0, n, batch_size):
            args = {k: raw_tensor(raw[k][start : start + batch_size]) for k in names}
            outputs = fn(**args)
            for key, chunks in parts.items():
                chunks.append(outputs[key].numpy())
        return {
            k: np.concatenate(v) if v else np.zeros(0, np.float32)
            for k, v in parts.items()
        }

    scorer.loaded = loaded  # type: ignore[attr-defined]  # keeps the resources alive
    return scorer


def read_export_metadata(export_dir: str) -> dict[str, Any]:
    """``export_metadata.json`` of a finished export.

    Args:
        export_dir: A directory written by
            :func:`trainer.serving.export.export_serving_model`.

    Returns:
        The export metadata (sizes, bits, compression, the check, the feature spec).

    Raises:
        FileNotFoundError: if the export is missing or unfinished.
    """
    path = os.path.join(export_dir, EXPORT_METADATA)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: {export_dir} is not a finished export"
        )
    with open(path, encoding="utf-8") as f:
        return dict(json.load(f))
