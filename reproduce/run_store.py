"""Finished ranking runs, committed under ``reproduce/runs/ranking/``, so a reproduction
resumes, grows by seeds, and survives a fresh checkout.

Each finished run is one small JSON file named by backbone, method, seed and the
fingerprint (:func:`trainer.contracts.fingerprint.fingerprint`) of what decides its
result: the full config with overrides and seed, the evaluation protocol and cadence,
and the data's content (:func:`data_fingerprint`). A later invocation with the same
settings loads the file instead of training again, so an interrupted reproduction
resumes at the first unfinished run, and ``--seeds 5`` after ``--seeds 3`` trains only
seeds 3 and 4. Changing any setting changes the name: other settings are never reused.

Every file also records the CODE fingerprint (:func:`code_fingerprint`): sha256 over the
contents of the fixed list :data:`CODE_PATHS` (the model, layers, loop, data and
evaluation modules). A stored run whose code fingerprint differs from the current code
is *stale*: :meth:`RunStore.lookup` still returns it (with the files that changed), the
reproduction lists it as stale instead of mixing it into the tables, and
``--rerun-stale`` retrains it in place.

Example:
    >>> store = RunStore("reproduce/runs/ranking")                    # doctest: +SKIP
    >>> hit = store.lookup("gmf_mgqe", cfg, "full", 1, task)          # doctest: +SKIP
    >>> hit.result if hit and not hit.stale else train(...)           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np

from trainer.config import TrainerConfig
from trainer.contracts import storage
from trainer.contracts.fingerprint import fingerprint as _fingerprint
from trainer.evaluation.ranking import EpochLog, RankingResult, SplitMetrics
from trainer.serving.tables import ModelSize

FORMAT = 2
#: Where ``python -m reproduce.ranking`` keeps its finished runs (committed).
DEFAULT_ROOT = os.path.join("reproduce", "runs", "ranking")
#: The source files whose contents decide a ranking run's result, relative to the
#: repository root: models, embedding layers, the loop, the data and the evaluation.
CODE_PATHS = (
    "trainer/models/factory.py",
    "trainer/models/gmf.py",
    "trainer/models/neumf.py",
    "trainer/models/sasrec.py",
    "trainer/models/ranking_common.py",
    "trainer/layers/base.py",
    "trainer/layers/factory.py",
    "trainer/layers/full_embedding.py",
    "trainer/layers/low_rank_embedding.py",
    "trainer/layers/scalar_quantized_embedding.py",
    "trainer/layers/dpq_embedding.py",
    "trainer/layers/mgqe_embedding.py",
    "trainer/layers/mgqe_unshared.py",
    "trainer/layers/vq_ops.py",
    "trainer/training/fit.py",
    "trainer/training/loop.py",
    "trainer/training/losses.py",
    "trainer/training/optimizers.py",
    "trainer/data/samples.py",
    "trainer/data/sequences.py",
    "trainer/evaluation/metrics.py",
    "trainer/evaluation/ranking.py",
    "trainer/serving/tables.py",
)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_files(
    root: str = REPO_ROOT, paths: tuple[str, ...] = CODE_PATHS
) -> dict[str, str]:
    """``path -> sha256[:12]`` of each file's bytes (``"missing"`` if absent)."""
    out = {}
    for rel in paths:
        try:
            with open(os.path.join(root, rel), "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()[:12]
        except FileNotFoundError:
            out[rel] = "missing"
    return out


def code_fingerprint(files: dict[str, str] | None = None) -> str:
    """12 hex digits over :func:`code_files` (the current code by default)."""
    return _fingerprint(code_files() if files is None else files)


def data_fingerprint(task: Any) -> str:
    """12 hex digits over the content of a task's arrays (ids, splits, sizes)."""
    h = hashlib.sha256()
    for field in ("num_users", "num_items"):
        h.update(str(int(getattr(task, field, 0) or 0)).encode())
    for field in (
        "train_items",
        "train_offsets",
        "valid",
        "test",
        "user_ids",
        "item_ids",
    ):
        value = getattr(task, field, None)
        if value is not None:
            h.update(field.encode() + np.ascontiguousarray(value, np.int64).tobytes())
    return h.hexdigest()[:12]


def fingerprint(
    cfg: TrainerConfig,
    protocol: str,
    eval_every: int,
    data: Any,
    candidates: str | None = None,
) -> str:
    """12 hex digits over the config, the protocol, the cadence and the data's content
    (and the content fingerprint of an external candidate file, if one is evaluated).

    The code is *not* in this key: a run from older code keeps its file name and is
    found as stale (:attr:`StoredRun.stale`), not lost.
    """
    key = {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "protocol": protocol,
        "eval_every": eval_every,
        "data": data_fingerprint(data),
    }
    if candidates is not None:
        key["candidates"] = candidates
    return _fingerprint(key)


def _split(m: SplitMetrics | None) -> dict[str, Any] | None:
    return None if m is None else {"hr": m.hr, "ndcg": m.ndcg, "users": m.num_users}


def _unsplit(m: dict[str, Any] | None) -> SplitMetrics | None:
    return None if m is None else SplitMetrics(m["hr"], m["ndcg"], m["users"])


def result_to_dict(result: RankingResult) -> dict[str, Any]:
    """A JSON-ready dict that :func:`result_from_dict` turns back into the result."""
    return {
        "model": result.model,
        "method": result.method,
        "seed": result.seed,
        "protocol": result.protocol,
        "best_epoch": result.best_epoch,
        "valid": _split(result.valid),
        "test": _split(result.test),
        "extra": {k: _split(v) for k, v in sorted(result.extra.items())},
        "size": {
            "table_bits": result.size.table_bits,
            "full_table_bits": result.size.full_table_bits,
            "dense_params": result.size.dense_params,
            "percent": result.size.percent,
        },
        "history": [
            {
                "epoch": h.epoch,
                "loss": h.loss,
                "reg_loss": h.reg_loss,
                "seconds": h.seconds,
                "valid": _split(h.valid),
                "test": _split(h.test),
                "extra": {k: _split(v) for k, v in sorted(h.extra.items())},
            }
            for h in result.history
        ],
        "train_seconds": result.train_seconds,
        "config": result.config.to_dict(),
    }


def result_from_dict(raw: dict[str, Any], source: str = "<dict>") -> RankingResult:
    """Inverse of :func:`result_to_dict`; a missing field raises ``ValueError``."""
    try:
        size = raw["size"]
        return RankingResult(
            model=raw["model"],
            method=raw["method"],
            seed=raw["seed"],
            best_epoch=raw["best_epoch"],
            valid=_unsplit(raw["valid"]),
            test=_unsplit(raw["test"]),
            size=ModelSize(
                dict(size["table_bits"]),
                dict(size["full_table_bits"]),
                size["dense_params"],
                size["percent"],
            ),
            history=tuple(
                EpochLog(
                    h["epoch"],
                    h["loss"],
                    h["reg_loss"],
                    h["seconds"],
                    _unsplit(h["valid"]),
                    _unsplit(h["test"]),
                    {k: _unsplit(v) for k, v in h.get("extra", {}).items()},
                )
                for h in raw["history"]
            ),
            train_seconds=raw["train_seconds"],
            config=TrainerConfig.from_dict(raw["config"], source),
            protocol=raw.get("protocol", "full"),
            extra={k: _unsplit(v) for k, v in raw.get("extra", {}).items()},
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{source}: not a stored ranking run ({e!r})") from None


@dataclasses.dataclass(frozen=True)
class StoredRun:
    """A run read from the store, and whether the code that made it is the current."""

    path: str
    result: RankingResult
    code: str
    code_files: dict[str, str]
    current_files: dict[str, str]

    @property
    def stale(self) -> bool:
        """Made by other code than the current (:func:`code_fingerprint`)."""
        return self.code != code_fingerprint(self.current_files)

    @property
    def changed_files(self) -> list[str]:
        """The :data:`CODE_PATHS` whose content differs from the stored run's."""
        paths = sorted(set(self.code_files) | set(self.current_files))
        return [p for p in paths if self.code_files.get(p) != self.current_files.get(p)]


class RunStore:
    """A directory of ``<name>_seed<k>_<fingerprint>.json`` files.

    Args:
        root: The directory (created on the first save).
        code_root: Repository root the :data:`CODE_PATHS` are read from.
    """

    def __init__(self, root: str = DEFAULT_ROOT, code_root: str = REPO_ROOT):
        self.root = root
        self.code_root = code_root

    def current_code(self) -> dict[str, str]:
        """:func:`code_files` of the current code."""
        return code_files(self.code_root)

    def path(
        self,
        name: str,
        cfg: TrainerConfig,
        protocol: str,
        every: int,
        data: Any,
        candidates: str | None = None,
    ) -> str:
        key = fingerprint(cfg, protocol, every, data, candidates)
        return storage.join(self.root, f"{name}_seed{cfg.training.seed}_{key}.json")

    def lookup(
        self,
        name: str,
        cfg: TrainerConfig,
        protocol: str,
        every: int,
        data: Any,
        candidates: str | None = None,
    ) -> StoredRun | None:
        """The stored run with exactly these settings (stale or not), or None."""
        path = self.path(name, cfg, protocol, every, data, candidates)
        if not storage.exists(path):
            return None
        try:
            raw = json.loads(storage.read_text(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: corrupt stored run: {e}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("result"), dict):
            raise ValueError(f"{path}: not a stored ranking run (no 'result')")
        code = raw.get("code", {})
        return StoredRun(
            path,
            result_from_dict(raw["result"], path),
            str(code.get("fingerprint", "")),
            dict(code.get("files", {})),
            self.current_code(),
        )

    def load(
        self,
        name: str,
        cfg: TrainerConfig,
        protocol: str,
        every: int,
        data: Any,
        candidates: str | None = None,
    ) -> RankingResult | None:
        """The stored run with these settings made by the current code, or None."""
        hit = self.lookup(name, cfg, protocol, every, data, candidates)
        return None if hit is None or hit.stale else hit.result

    def save(
        self,
        name: str,
        result: RankingResult,
        protocol: str,
        every: int,
        data: Any,
        candidates: str | None = None,
    ) -> str:
        """Writes the run (replacing a stale one) through :mod:`trainer.contracts.storage`.

        The file records the settings, the data and code fingerprints, and the result
        (per-epoch validation and test metrics of every protocol, the chosen epoch,
        seconds, serving bits).
        """
        path = self.path(name, result.config, protocol, every, data, candidates)
        files = self.current_code()
        record = {
            "format": FORMAT,
            "name": name,
            "seed": result.config.training.seed,
            "protocol": protocol,
            "eval_every": every,
            "candidates": candidates,
            "data": {
                "fingerprint": data_fingerprint(data),
                "num_users": int(getattr(data, "num_users", 0) or 0),
                "num_items": int(getattr(data, "num_items", 0) or 0),
            },
            "code": {"fingerprint": code_fingerprint(files), "files": files},
            "result": result_to_dict(result),
        }
        storage.write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
        return path
