"""The model-specific part of the one training loop: a loss per model.

``loss_fn(model, batch)`` returns per-example losses ``(B,)`` or an already averaged
scalar; :func:`trainer.training.loop.train` averages it over the (global) batch and
adds the layers' regularisers (``model.losses``: the DPQ/MGQE centroid terms).

* :func:`pointwise_bce`: binary cross-entropy of the logits against 0/1 labels, for a
  batch ``(features, labels)``: wide-and-deep's click labels, and GMF/NeuMF's positives
  with sampled negatives (He et al. 2017, "Neural Collaborative Filtering", sec. 3.1.1,
  eq. 7).
* :func:`sequence_loss`: SASRec's next-item BCE over the non-padding positions of a
  batch ``(seq, pos, neg)`` (Kang & McAuley 2018, "Self-Attentive Sequential
  Recommendation", sec. III-E, eq. 7).

Example:
    >>> loss_for("sasrec").__name__
    'sequence_loss'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf


def bce_with_logits(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example sigmoid cross-entropy, float32, both flattened to ``(B,)``."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.float32)
    logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def pointwise_bce(model: Any, batch: Any) -> tf.Tensor:
    """Per-example BCE of ``model(features)`` for a batch ``(features, labels)``."""
    features, labels = batch
    return bce_with_logits(labels, model(features, training=True))


def sequence_loss(model: Any, batch: Any) -> tf.Tensor:
    """SASRec's ``-log σ(pos) - log(1 - σ(neg))``, mean over non-padding targets.

    ``batch`` is ``(seq, pos, neg)``: ``(B, L)`` item ids shifted by one (0 = padding).
    """
    seq, pos, neg = batch
    pos_logits, neg_logits = model.train_logits(seq, pos, neg, training=True)
    pos_logits = tf.cast(pos_logits, tf.float32)
    neg_logits = tf.cast(neg_logits, tf.float32)
    mask = tf.cast(tf.not_equal(pos, 0), tf.float32)
    per_position = tf.nn.softplus(-pos_logits) + tf.nn.softplus(neg_logits)
    return tf.reduce_sum(per_position * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


#: Model name -> its loss. Wide-and-deep, GMF and NeuMF are pointwise.
LOSSES: dict[str, Callable[[Any, Any], tf.Tensor]] = {
    "wide_deep": pointwise_bce,
    "gmf": pointwise_bce,
    "neumf": pointwise_bce,
    "sasrec": sequence_loss,
}


def loss_for(model_name: str) -> Callable[[Any, Any], tf.Tensor]:
    """The loss of model ``model_name``.

    Raises:
        ValueError: For a model without a loss here.
    """
    if model_name not in LOSSES:
        raise ValueError(f"no loss for model {model_name!r}; known: {sorted(LOSSES)}")
    return LOSSES[model_name]
