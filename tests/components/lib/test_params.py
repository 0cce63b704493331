"""components.lib.params: dict parameters after KFP's Struct transport."""

from __future__ import annotations

from google.protobuf import json_format, struct_pb2

from components.lib import params
from trainer.config import TrainerConfig


def _through_struct(value: dict) -> dict:
    """What KFP does to a dict parameter on its way to a component."""
    struct = struct_pb2.Struct()
    struct.update(value)
    return json_format.MessageToDict(struct)


def test_restores_ints_so_strict_configs_accept_the_dict() -> None:
    raw = {
        "name": "h",
        "training": {"batch_size": 256, "epochs": 2},
        "optimizer": {"learning_rate": 1.0},
        "model": {"hidden_units": [64, 32]},
    }
    sent = _through_struct(raw)
    assert sent["training"]["batch_size"] == 256.0
    assert isinstance(sent["training"]["batch_size"], float)  # the problem
    restored = params.from_struct(sent)
    assert restored == raw
    assert isinstance(restored["training"]["batch_size"], int)
    config = TrainerConfig.from_dict(restored)
    assert config.training.batch_size == 256
    assert config.optimizer.learning_rate == 1.0
    assert config.model.hidden_units == (64, 32)


def test_leaves_other_values_alone() -> None:
    value = {"a": 0.5, "b": True, "c": "3.0", "d": None, "e": [1.5, False]}
    assert params.from_struct(value) == value
    assert params.from_struct(value)["b"] is True
