"""A model registry on a directory (local path or ``gs://``), safe under concurrency.

Layout under ``REGISTRY``::

    claims/<N>.json                    reserves version number N (create-if-absent)
    keys/<sha256(key)>.json            binds an idempotency key to its version N
    versions/<N>/<attempt>/model/...   the copied model files of one attempt
    versions/<N>/<attempt>/checkpoint/ optional trainer checkpoint (for warm starts)
    versions/<N>/version.json          THE marker: version N exists iff this exists
    aliases/<alias>.json               {"version", "order_key", "history"}, moved by CAS

``register`` runs these steps, each safe to repeat and to race:

1. Reserve a number: ``N = max(claims) + 1`` created with ``create_if_absent``;
   on conflict re-list and try again.
2. Bind the idempotency key to N with ``create_if_absent``. If another registration
   with the same key won, continue with *its* number (ours stays an unused hole).
3. Copy the model into a fresh attempt directory, then create the marker with
   ``create_if_absent``; exactly one attempt per version wins.
4. Advance the alias with compare-and-swap (``read_with_generation`` +
   ``write_if_generation_match``), retrying on conflict. The decision is taken inside
   the CAS loop, on the alias as it is when the write succeeds: the alias moves only
   *forward* in ``order_key`` order (the hour; ties broken by version number), and
   never to a version its history already holds. So a stale retry of an older hour
   registers its version but leaves ``production`` where it is, racing registrations
   of different hours leave it on the newest hour whatever order their writes land
   in, and no move is ever recorded twice.

A crash anywhere leaves files that no reader trusts (no marker), and re-running
``register`` with the same key completes the same version N. Version numbers are
increasing in claim order (not hour order) and may skip a number when two
registrations with one key race. :func:`set_alias` is the operator's explicit move
(a rollback) and is not restricted to forward moves.

Example:
    >>> import tempfile
    >>> reg, model = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> storage.write_text(storage.join(model, "saved_model.pb"), "m")
    >>> v = register(reg, model, {"hour": "2026-01-01T05"}, idempotency_key="h05")
    >>> v.version, get_production(reg).version
    (1, 1)
    >>> old = register(reg, model, {}, idempotency_key="h04")  # a late, older hour
    >>> old.version, get_production(reg).version
    (2, 1)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from trainer.contracts import storage

logger = logging.getLogger(__name__)

PRODUCTION = "production"
MAX_ATTEMPTS = 100
HISTORY_LIMIT = 1000


class RegistryError(RuntimeError):
    """The registry is inconsistent or an operation gave up after retries."""


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One registered, visible model version.

    Attributes:
        version: The version number (increasing, starting at 1).
        model_uri: Directory of the registry's copy of the (serving) model.
        checkpoint_uri: Directory of the copied trainer checkpoint, if one was given.
        idempotency_key: The key the version was registered under (e.g. the hour).
        parent_version: The alias' version when this one was created, if any.
        created_at: ISO-8601 UTC time the marker was written.
        metadata: Free-form metadata: metrics, compression ratio, lineage.
        order_key: What orders versions for the alias (the hour); the alias only
            moves to a version whose ``(order_key, version)`` is larger.
    """

    version: int
    model_uri: str
    checkpoint_uri: str | None
    idempotency_key: str
    parent_version: int | None
    created_at: str
    metadata: dict[str, Any]
    order_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelVersion:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in fields})


# -------------------------------------------------------------------------- paths


def _claim_uri(registry: str, n: int) -> str:
    return storage.join(registry, "claims", f"{n}.json")


def _key_uri(registry: str, key: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return storage.join(registry, "keys", f"{digest}.json")


def _marker_uri(registry: str, n: int) -> str:
    return storage.join(registry, "versions", str(n), "version.json")


def _alias_uri(registry: str, alias: str) -> str:
    return storage.join(registry, "aliases", f"{alias}.json")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1).encode("utf-8")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


# -------------------------------------------------------------------------- reading


def get_version(registry_uri: str, version: int) -> ModelVersion | None:
    """Returns version ``version`` if its marker exists, else None."""
    data, generation = storage.read_with_generation(_marker_uri(registry_uri, version))
    if not generation:
        return None
    return ModelVersion.from_dict(json.loads(data))


def list_versions(registry_uri: str) -> list[ModelVersion]:
    """All visible versions (those with a marker), oldest first."""
    out = []
    for n in _claimed_numbers(registry_uri):
        found = get_version(registry_uri, n)
        if found is not None:
            out.append(found)
    return out


def get_alias(registry_uri: str, alias: str = PRODUCTION) -> int | None:
    """The version number ``alias`` points at, or None if it was never set."""
    data, generation = storage.read_with_generation(_alias_uri(registry_uri, alias))
    return int(json.loads(data)["version"]) if generation else None


def get_production(registry_uri: str, alias: str = PRODUCTION) -> ModelVersion | None:
    """The version the ``production`` alias points at, or None if there is none."""
    version = get_alias(registry_uri, alias)
    if version is None:
        return None
    found = get_version(registry_uri, version)
    if found is None:
        raise RegistryError(
            f"alias {alias!r} points at v{version}, which has no marker"
        )
    return found


def fetch_production(
    registry_uri: str, model_dir: str, checkpoint_dir: str, alias: str = PRODUCTION
) -> ModelVersion | None:
    """Copies the production model and checkpoint into two directories.

    Both directories are created (empty when there is nothing to copy), so a pipeline
    step can always hand them on.

    Args:
        registry_uri: The registry directory.
        model_dir: Where the serving model goes.
        checkpoint_dir: Where the trainer checkpoint goes (for warm starts).
        alias: The alias to resolve.

    Returns:
        The production version, or None when the alias was never set.
    """
    storage.makedirs(model_dir)
    storage.makedirs(checkpoint_dir)
    found = get_production(registry_uri, alias)
    if found is not None:
        _copy_tree(found.model_uri, model_dir)
        if found.checkpoint_uri:
            _copy_tree(found.checkpoint_uri, checkpoint_dir)
    return found


def _claimed_numbers(registry_uri: str) -> list[int]:
    numbers = []
    for uri in storage.list_files(storage.join(registry_uri, "claims")):
        name = uri.rsplit("/", 1)[-1]
        if name.endswith(".json") and name[: -len(".json")].isdigit():
            numbers.append(int(name[: -len(".json")]))
    return sorted(numbers)


# -------------------------------------------------------------------------- writing


def set_alias(registry_uri: str, alias: str, version: int) -> None:
    """Points ``alias`` at ``version`` with compare-and-swap; retries on conflict.

    The operator's explicit move: unlike :func:`register`, it may move the alias
    backwards (a rollback).

    Raises:
        RegistryError: if ``version`` is not visible or the CAS kept failing.
    """
    found = get_version(registry_uri, version)
    if found is None:
        raise RegistryError(f"cannot alias {alias!r} to v{version}: no such version")
    _move_alias(registry_uri, alias, found, forward_only=False)


def _move_alias(
    registry_uri: str, alias: str, version: ModelVersion, *, forward_only: bool
) -> bool:
    """Step 4: the CAS loop; returns True if this call moved the alias.

    With ``forward_only`` the alias stays where it is when it already points at a
    version of a larger ``(order_key, version)`` or its history holds ``version``;
    both are decided on the record that the successful write replaces.
    """
    uri = _alias_uri(registry_uri, alias)
    for _ in range(MAX_ATTEMPTS):
        data, generation = storage.read_with_generation(uri)
        current = json.loads(data) if generation else {"history": []}
        if forward_only and generation:
            reason = _stay_reason(registry_uri, current, version)
            if reason:
                logger.info(
                    "alias %s stays at v%s: %s", alias, current["version"], reason
                )
                return False
        history = [*current["history"], version.version][-HISTORY_LIMIT:]
        record = {
            "version": version.version,
            "order_key": version.order_key,
            "updated_at": _now(),
            "history": history,
        }
        try:
            storage.write_if_generation_match(uri, _dumps(record), generation)
        except storage.PreconditionFailed:
            continue
        logger.info(
            "alias %s -> v%d (was %s)", alias, version.version, current.get("version")
        )
        return True
    raise RegistryError(
        f"gave up moving alias {alias!r} after {MAX_ATTEMPTS} conflicts"
    )


def _stay_reason(
    registry_uri: str, current: Mapping[str, Any], version: ModelVersion
) -> str:
    """Why a forward-only move to ``version`` must not happen ("" = it may)."""
    if version.version in current["history"]:
        return f"v{version.version} was already in its history"
    now = int(current["version"])
    now_key = current.get("order_key")
    if now_key is None:  # written before order keys were recorded in the alias
        found = get_version(registry_uri, now)
        now_key = found.order_key if found else ""
    if (version.order_key, version.version) < (now_key, now):
        return (
            f"v{version.version} ({version.order_key!r}) is older than "
            f"v{now} ({now_key!r})"
        )
    return ""


def register(
    registry_uri: str,
    model_uri: str,
    metadata: Mapping[str, Any],
    *,
    idempotency_key: str,
    checkpoint_uri: str | None = None,
    alias: str | None = PRODUCTION,
    order_key: str | None = None,
) -> ModelVersion:
    """Registers ``model_uri`` as a new version and advances ``alias`` to it.

    Args:
        registry_uri: The registry directory (local or ``gs://``).
        model_uri: Directory holding the model to copy into the registry.
        metadata: JSON-serialisable metadata stored with the version.
        idempotency_key: Registering again with the same key (e.g. the hour) returns
            the version it created and adds nothing.
        checkpoint_uri: Optional trainer checkpoint directory to copy as well.
        alias: The alias to advance to the new version; None leaves aliases alone.
        order_key: Orders versions for the alias (string order, so ISO hours sort
            by time); default the idempotency key. The alias moves only to a
            larger ``(order_key, version)``; see the module docstring.

    Returns:
        The registered (or the already existing) version.

    Raises:
        FileNotFoundError: if ``model_uri`` holds no files.
        RegistryError: if the registry kept conflicting or is inconsistent.
    """
    if not idempotency_key:
        raise ValueError("idempotency_key must be a non-empty string")
    order = idempotency_key if order_key is None else order_key
    number = _number_for_key(registry_uri, idempotency_key)
    version = get_version(registry_uri, number)
    if version is None:
        version = _publish(
            registry_uri,
            number,
            model_uri,
            checkpoint_uri,
            metadata,
            idempotency_key,
            order,
        )
    else:
        logger.info("key %r already registered as v%d", idempotency_key, number)
    if alias is not None:
        _move_alias(registry_uri, alias, version, forward_only=True)
    return version


def version_for_key(registry_uri: str, key: str) -> ModelVersion | None:
    """The visible version registered under idempotency key ``key``, or None."""
    data, generation = storage.read_with_generation(_key_uri(registry_uri, key))
    if not generation:
        return None
    return get_version(registry_uri, int(json.loads(data)["version"]))


def _number_for_key(registry_uri: str, key: str) -> int:
    """Steps 1-2: the version number bound to ``key``, reserving one if needed."""
    key_uri = _key_uri(registry_uri, key)
    data, generation = storage.read_with_generation(key_uri)
    if generation:
        return int(json.loads(data)["version"])
    number = _reserve_number(registry_uri, key)
    if storage.create_if_absent(key_uri, _dumps({"key": key, "version": number})):
        return number
    winner = int(json.loads(storage.read_bytes(key_uri))["version"])
    logger.info(
        "key %r was bound to v%d concurrently; v%d stays unused", key, winner, number
    )
    return winner


def _reserve_number(registry_uri: str, key: str) -> int:
    claim = _dumps({"key": key, "claimed_at": _now()})
    for _ in range(MAX_ATTEMPTS):
        numbers = _claimed_numbers(registry_uri)
        candidate = (numbers[-1] if numbers else 0) + 1
        if storage.create_if_absent(_claim_uri(registry_uri, candidate), claim):
            return candidate
    raise RegistryError(f"no free version number after {MAX_ATTEMPTS} attempts")


def _publish(
    registry_uri: str,
    number: int,
    model_uri: str,
    checkpoint_uri: str | None,
    metadata: Mapping[str, Any],
    key: str,
    order_key: str,
) -> ModelVersion:
    """Step 3: copies the files of one attempt, then creates the marker (last)."""
    attempt = storage.join(registry_uri, "versions", str(number), uuid.uuid4().hex)
    copied_model = storage.join(attempt, "model")
    _copy_tree(model_uri, copied_model)
    copied_checkpoint = None
    if checkpoint_uri:
        copied_checkpoint = storage.join(attempt, "checkpoint")
        _copy_tree(checkpoint_uri, copied_checkpoint)
    version = ModelVersion(
        version=number,
        model_uri=copied_model,
        checkpoint_uri=copied_checkpoint,
        idempotency_key=key,
        parent_version=get_alias(registry_uri, PRODUCTION),
        created_at=_now(),
        metadata=json.loads(json.dumps(dict(metadata))),
        order_key=order_key,
    )
    marker = _marker_uri(registry_uri, number)
    if storage.create_if_absent(marker, _dumps(version.to_dict())):
        logger.info("registered v%d from %s", number, model_uri)
        return version
    logger.info("v%d was published by a concurrent attempt", number)
    return ModelVersion.from_dict(json.loads(storage.read_bytes(marker)))


def _copy_tree(src: str, dst: str) -> None:
    files = storage.list_files(src)
    if not files:
        raise FileNotFoundError(f"no files to register under {src}")
    base = src.rstrip("/")
    for path in files:
        rel = path[len(base) :].lstrip("/\\").replace("\\", "/")
        storage.write_bytes(
            storage.join(dst, *rel.split("/")), storage.read_bytes(path)
        )
