"""Undo what KFP's parameter transport does to dict parameters.

KFP passes ``dict`` and ``list`` parameters as ``google.protobuf.Struct`` values, where
every number is a double: ``{"batch_size": 256}`` arrives as ``{"batch_size": 256.0}``,
which strict configs (``trainer.config.TrainerConfig``) rightly reject. No kfp import.

Example:
    >>> from_struct({"training": {"batch_size": 256.0, "lr": 0.5}, "tags": [1.0, "a"]})
    {'training': {'batch_size': 256, 'lr': 0.5}, 'tags': [1, 'a']}
"""

from __future__ import annotations

from typing import Any


def from_struct(value: Any) -> Any:
    """Turns integral floats back into ints, recursively through dicts and lists.

    A float field that happens to be integral (``learning_rate: 1.0``) becomes ``1``;
    configs that take floats accept ints, so this is safe for them. Booleans, strings
    and non-integral floats are left alone.
    """
    if isinstance(value, dict):
        return {k: from_struct(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_struct(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
