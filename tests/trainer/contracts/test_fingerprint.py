"""trainer.contracts.fingerprint: the one run fingerprint."""

from __future__ import annotations

import hashlib
import json
import pathlib

import pytest

from trainer.contracts.fingerprint import canonical, canonical_json, fingerprint


def test_order_and_tuples_do_not_matter_values_do() -> None:
    a = {"config": {"b": 1, "a": (2, 3)}, "path": pathlib.Path("x")}
    b = {"path": "x", "config": {"a": [2, 3], "b": 1}}
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 12 and len(fingerprint(a, length=10)) == 10
    assert fingerprint({"config": {"a": [2, 4], "b": 1}}) != fingerprint(b)
    assert canonical(a) == {"config": {"a": [2, 3], "b": 1}, "path": "x"}
    with pytest.raises(ValueError, match="length"):
        fingerprint(a, length=0)


def test_same_values_as_the_three_former_implementations() -> None:
    # reproduce.run_store: json.dumps(key, sort_keys=True), 12 hex digits.
    key = {"format": 1, "config": {"name": "g"}, "protocol": "full", "data": [3, 4]}
    old = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    assert fingerprint(key) == old
    # reproduce.hashing._model_dir: a list with default=str, 10 hex digits.
    inputs = [{"name": "h"}, pathlib.Path("/d/train"), 3]
    blob = json.dumps(inputs, sort_keys=True, default=str)
    assert (
        fingerprint(inputs, length=10) == hashlib.sha256(blob.encode()).hexdigest()[:10]
    )
    # trainer.task._claim_out_dir compares json.loads(json.dumps(x, default=str)).
    assert canonical(inputs) == json.loads(json.dumps(inputs, default=str))
    assert canonical_json(inputs) == blob
