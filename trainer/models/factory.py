"""Model factory: the only place that maps a model name to a model class.

:func:`build_model` takes the :class:`~trainer.config.ModelConfig` of a run and the
sizes that come from the data (row counts, the feature spec), so callers never name a
model class themselves. Each backbone lives in its own module (``gmf.py``,
``neumf.py``, ``sasrec.py``, ``wide_deep.py``), as in STYLE.md 1.

Example:
    >>> from trainer.config import ModelConfig
    >>> model = build_model(ModelConfig(name="gmf"), num_users=10, num_items=20)
    >>> model.name
    'gmf'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from trainer.config import ModelConfig


def _gmf(config: ModelConfig, num_users: int, num_items: int) -> keras.Model:
    from trainer.models.gmf import GMF

    return GMF(num_users, num_items, config.embedding, name="gmf")


def _neumf(config: ModelConfig, num_users: int, num_items: int) -> keras.Model:
    from trainer.models.neumf import NeuMF

    return NeuMF(
        num_users, num_items, config.embedding, config.hidden_units, name="neumf"
    )


def _sasrec(config: ModelConfig, num_items: int) -> keras.Model:
    from trainer.models.sasrec import SASRec

    return SASRec(
        num_items,
        config.embedding,
        maxlen=config.maxlen,
        num_blocks=config.num_blocks,
        num_heads=config.num_heads,
        dropout=config.dropout,
        name="sasrec",
    )


def _wide_deep(
    config: ModelConfig, feature_spec: dict[str, Any], table_rows: dict[str, int]
) -> keras.Model:
    from trainer.models.wide_deep import WideAndDeep

    return WideAndDeep(
        feature_spec,
        table_rows,
        config.hidden_units,
        config.dropout,
        name="wide_and_deep",
    )


# name -> (builder, the sizes it takes from the data)
_BUILDERS: dict[str, tuple[Callable[..., keras.Model], tuple[str, ...]]] = {
    "gmf": (_gmf, ("num_users", "num_items")),
    "neumf": (_neumf, ("num_users", "num_items")),
    "sasrec": (_sasrec, ("num_items",)),
    "wide_deep": (_wide_deep, ("feature_spec", "table_rows")),
}


def required_sizes(name: str) -> tuple[str, ...]:
    """The keyword sizes :func:`build_model` needs for model ``name``.

    Raises:
        ValueError: For an unknown model name.
    """
    if name not in _BUILDERS:
        raise ValueError(
            f"`name` must be one of {tuple(_BUILDERS)}. Received: {name!r}"
        )
    return _BUILDERS[name][1]


def build_model(config: ModelConfig, **sizes: Any) -> keras.Model:
    """Builds the backbone named by ``config.name``.

    Args:
        config: The backbone, its embedding config and its layer sizes.
        **sizes: What the data decides: ``num_users`` and ``num_items`` (gmf, neumf),
            ``num_items`` (sasrec, padding row excluded), ``feature_spec``
            (``FeatureSpec.to_dict()``) and ``table_rows`` (wide_deep).

    Returns:
        The unbuilt Keras model, named after the backbone (``wide_and_deep`` for
        wide_deep, which warm start and export expect).

    Raises:
        ValueError: For an unknown name, or a missing or unexpected size (named).
    """
    needed = required_sizes(config.name)
    missing = [k for k in needed if k not in sizes]
    extra = sorted(set(sizes) - set(needed))
    if missing or extra:
        raise ValueError(
            f"model {config.name!r} takes the sizes {needed}; "
            f"missing {missing}, unexpected {extra}"
        )
    return _BUILDERS[config.name][0](config, **sizes)


RANKING_MODELS = ("gmf", "neumf", "sasrec")


def build_ranking_model(config: ModelConfig, task: Any) -> keras.Model:
    """The ranking backbone of ``config`` sized for ``task``'s users and items.

    Args:
        config: A gmf, neumf or sasrec :class:`~trainer.config.ModelConfig`.
        task: A :class:`~trainer.data.samples.RankingTask` (or anything with
            ``num_users`` and ``num_items``).

    Raises:
        ValueError: For a model that is not a ranking backbone.
    """
    if config.name not in RANKING_MODELS:
        raise ValueError(
            f"model {config.name!r} is not a ranking backbone "
            f"({', '.join(RANKING_MODELS)})"
        )
    counts = {"num_users": task.num_users, "num_items": task.num_items}
    return build_model(config, **{k: counts[k] for k in required_sizes(config.name)})
