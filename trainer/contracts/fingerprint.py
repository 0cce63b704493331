"""THE run fingerprint: canonical JSON of the settings that decide a result -> sha256.

Used wherever a stored result or a model directory must be reused only for the same
settings: ``trainer.task`` (is this ``--out`` the same run?), ``reproduce.run_store``
(finished ranking runs) and ``reproduce.hashing`` (model directories of the hashing
study). Canonical JSON is ``json.dumps(value, sort_keys=True, default=str)``: keys
sorted, default separators, tuples as lists, anything else (paths, enums) as its
``str``. Fingerprints made before this module existed used the same text, so stored
runs keep their names.

Example:
    >>> fingerprint({"b": 1, "a": (2, 3)})
    'e91782078782'
    >>> fingerprint({"a": [2, 3], "b": 1}) == fingerprint({"b": 1, "a": (2, 3)})
    True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """The one JSON text of ``value`` that every fingerprint hashes."""
    return json.dumps(value, sort_keys=True, default=str)


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data (what a stored copy reads back as)."""
    return json.loads(canonical_json(value))


def fingerprint(value: Any, length: int = 12) -> str:
    """The first ``length`` hex digits of sha256 over :func:`canonical_json`."""
    if not 1 <= length <= 64:
        raise ValueError(f"length must be in [1, 64], got {length}")
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]
