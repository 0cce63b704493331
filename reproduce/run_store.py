"""Finished ranking runs on disk, so a long reproduction resumes and grows by seeds.

``make reproduce`` is about a day of CPU time. Each finished run of the grid is written
as one JSON file, named by backbone, method, seed and a fingerprint of everything that
decides its result (the full config with overrides and seed, the evaluation protocol
and cadence, the data's shape). A later invocation with the same settings loads the
file instead of training again, so an interrupted reproduction resumes at the first
unfinished run, and ``--seeds 5`` after ``--seeds 3`` trains only seeds 3 and 4.
Changing any setting changes the fingerprint: stale results are never reused.

Example:
    >>> store = RunStore("runs/reproduce")                          # doctest: +SKIP
    >>> store.load("gmf_mgqe", cfg, "full", 1, data) or train(...)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import Any

from trainer.config import TrainerConfig
from trainer.contracts import storage
from trainer.contracts.fingerprint import fingerprint as _fingerprint
from trainer.evaluation.ranking import EpochLog, RankingResult, SplitMetrics
from trainer.serving.tables import ModelSize

FORMAT = 1


def fingerprint(cfg: TrainerConfig, protocol: str, eval_every: int, data: Any) -> str:
    """12 hex digits over the config, the protocol, the cadence and the data's sizes."""
    shape = [int(getattr(data, f, 0) or 0) for f in ("num_users", "num_items")]
    key = {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "protocol": protocol,
        "eval_every": eval_every,
        "data": shape,
    }
    return _fingerprint(key)


def result_to_dict(result: RankingResult) -> dict[str, Any]:
    """A JSON-ready dict that :func:`result_from_dict` turns back into the result."""

    def split(m: SplitMetrics | None) -> dict[str, Any] | None:
        return None if m is None else {"hr": m.hr, "ndcg": m.ndcg, "users": m.num_users}

    return {
        "model": result.model,
        "method": result.method,
        "seed": result.seed,
        "best_epoch": result.best_epoch,
        "valid": split(result.valid),
        "test": split(result.test),
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
                "valid": split(h.valid),
                "test": split(h.test),
            }
            for h in result.history
        ],
        "train_seconds": result.train_seconds,
        "config": result.config.to_dict(),
    }


def result_from_dict(raw: dict[str, Any], source: str = "<dict>") -> RankingResult:
    """Inverse of :func:`result_to_dict`; a missing field raises ``ValueError``."""

    def split(m: dict[str, Any] | None) -> SplitMetrics | None:
        return None if m is None else SplitMetrics(m["hr"], m["ndcg"], m["users"])

    try:
        size = raw["size"]
        return RankingResult(
            model=raw["model"],
            method=raw["method"],
            seed=raw["seed"],
            best_epoch=raw["best_epoch"],
            valid=split(raw["valid"]),
            test=split(raw["test"]),
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
                    split(h["valid"]),
                    split(h["test"]),
                )
                for h in raw["history"]
            ),
            train_seconds=raw["train_seconds"],
            config=TrainerConfig.from_dict(raw["config"], source),
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"{source}: not a stored ranking run ({e!r})") from None


class RunStore:
    """A directory of ``<name>_seed<k>_<fingerprint>.json`` files.

    Args:
        root: The directory (created on the first save).
    """

    def __init__(self, root: str):
        self.root = root

    def path(
        self, name: str, cfg: TrainerConfig, protocol: str, every: int, data: Any
    ) -> str:
        key = fingerprint(cfg, protocol, every, data)
        return storage.join(self.root, f"{name}_seed{cfg.training.seed}_{key}.json")

    def load(
        self, name: str, cfg: TrainerConfig, protocol: str, every: int, data: Any
    ) -> RankingResult | None:
        """The stored run with exactly these settings, or None."""
        path = self.path(name, cfg, protocol, every, data)
        if not storage.exists(path):
            return None
        try:
            raw = json.loads(storage.read_text(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: corrupt stored run: {e}") from None
        return result_from_dict(raw, path)

    def save(
        self,
        name: str,
        result: RankingResult,
        protocol: str,
        every: int,
        data: Any,
    ) -> str:
        """Writes the run atomically through :mod:`trainer.contracts.storage`."""
        path = self.path(name, result.config, protocol, every, data)
        text = json.dumps(result_to_dict(result), indent=1, sort_keys=True)
        storage.write_text(path, text)
        return path
