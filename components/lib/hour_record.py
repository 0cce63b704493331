"""The hour record (``WORKDIR/hours/<hour>.json``): what an hourly run left behind.

Two runs of one hour can race (a retry, a second ``run-local``). The registry keeps one
version per hour whatever happens, so the record is made to agree with it:

* :func:`with_registration` takes the run's own record and, if the registry holds a
  version for the hour, names *that* version: its number, its model (the registry's
  copy), and the size and metrics stored with it. The run's own export stays in
  ``candidate_model``. A run that lost the registration race therefore writes the
  winner's model, not its own.
* :func:`publish` writes the record create-only; a run that finds a record already
  there returns that one, so both runs report the same record. The one exception: a
  record that names no registered version is replaced (compare-and-swap) by one that
  does, so the record converges on the registry.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> first = publish(os.path.join(d, "h.json"), {"hour": "h", "seconds": 1.0})
    >>> publish(os.path.join(d, "h.json"), {"hour": "h", "seconds": 2.0})["seconds"]
    1.0
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from components.lib import registry
from trainer.contracts import storage

MAX_ATTEMPTS = 100
_FROM_VERSION = ("size_bytes", "serving_bits", "compression_ratio", "pipeline_run_id")


def with_registration(
    record: Mapping[str, Any], registry_uri: str, hour: str
) -> dict[str, Any]:
    """``record`` naming the version the registry holds for ``hour``, if any."""
    out = dict(record)
    out["candidate_model"] = record.get("serving_model")
    found = registry.version_for_key(registry_uri, hour)
    if found is None:
        out["registered_version"] = None
        return out
    meta = found.metadata
    out["registered_version"] = found.version
    out["serving_model"] = found.model_uri
    out["blessed"] = True  # only blessed models are registered
    if "metrics" in meta:
        out["metrics"] = dict(meta["metrics"])
    out.update({k: meta[k] for k in _FROM_VERSION if k in meta})
    return out


def publish(path: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Writes ``record`` at ``path`` unless one is there; returns the record kept.

    Raises:
        RuntimeError: if concurrent writers kept replacing the record.
    """
    data = json.dumps(record, indent=1, sort_keys=True, default=str).encode("utf-8")
    mine = json.loads(data)
    for _ in range(MAX_ATTEMPTS):
        if storage.create_if_absent(path, data):
            return mine
        raw, generation = storage.read_with_generation(path)
        if not generation:
            continue  # removed meanwhile: try creating again
        kept = json.loads(raw)
        if kept.get("registered_version") is not None or (
            mine.get("registered_version") is None
        ):
            return kept
        try:
            storage.write_if_generation_match(path, data, generation)
        except storage.PreconditionFailed:
            continue
        return mine
    raise RuntimeError(f"gave up writing {path} after {MAX_ATTEMPTS} conflicts")
