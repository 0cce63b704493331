"""Reads and scores a finished serving export of :mod:`trainer.serving.export`.

:func:`load_scorer` wraps the export's ``serving_default`` signature in a function from
raw events (the :func:`trainer.data.examples.table_to_raw` layout: object strings per
categorical, floats per numeric) to ``{"probability": (n,), "logit": (n,)}`` NumPy
arrays, calling the signature in batches; :func:`raw_tensor` converts one raw column to
the signature's dtype. :func:`read_export_metadata` reads ``export_metadata.json``,
whose presence marks an export that passed its check (:mod:`trainer.serving.checks`).

The names of the export layout that readers need live here (:data:`EXPORT_METADATA`,
:data:`EXTRA_ARTIFACTS`, :data:`SERVING_SIGNATURE`), so that :mod:`trainer.serving.export`,
:mod:`trainer.serving.checks` and :mod:`trainer.evaluation.evaluate` import them from one module
that imports none of them.

Ranking exports (GMF, NeuMF, SASRec; :mod:`trainer.serving.ranking_export`) score
explicit candidate lists in the raw id space of the data: :func:`load_ranking_scorer`,
or from the shell::

    python -m trainer.serving.scoring --export DIR --candidates FILE [--out FILE]

``FILE`` holds one line per user, ``user<TAB>item item item ...`` (raw ids); the output
(stdout or ``--out``) one line per pair, ``user<TAB>item<TAB>logit``, in input order,
``nan`` where the user or the item is unknown to the model. The logits rank the
candidates of a user (higher first), so any protocol (NCF's 99 negatives, SASRec's 100,
a published negative list, full ranking) can be evaluated from them.

Example:
    >>> meta = read_export_metadata(export_dir)  # doctest: +SKIP
    >>> scores = load_scorer(export_dir)(raw)  # doctest: +SKIP
    >>> sorted(scores)  # doctest: +SKIP
    ['logit', 'probability']
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

EXPORT_METADATA = "export_metadata.json"
EXTRA_ARTIFACTS = os.path.join("assets.extra", "artifacts")
SERVING_SIGNATURE = "serving_default"
SAVEDMODEL_ENTRIES = ("saved_model.pb", "variables", "assets", "fingerprint.pb")

Scorer = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def raw_tensor(values: np.ndarray) -> tf.Tensor:
    """One raw column in the signature's dtype: strings -> tf.string, else float32."""
    values = np.asarray(values)
    if values.dtype == object or values.dtype.kind in "US":
        return tf.constant(
            [str(v) for v in values.tolist()], tf.string, shape=[len(values)]
        )
    return tf.constant(values.astype(np.float32))


def load_scorer(export_dir: str, batch_size: int = 8192) -> Scorer:
    """A function ``raw events -> {"probability", "logit"}`` over an export.

    Args:
        export_dir: A directory written by
            :func:`trainer.serving.export.export_serving_model`.
        batch_size: Events per signature call.

    Returns:
        ``scorer(raw)``; ``raw`` maps each feature name to an ``(n,)`` array (object
        strings or floats, as :func:`trainer.data.examples.table_to_raw` returns them).
    """
    loaded = tf.saved_model.load(export_dir)
    fn = loaded.signatures[SERVING_SIGNATURE]
    names = sorted(fn.structured_input_signature[1])

    def scorer(raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(raw[names[0]])
        parts: dict[str, list[np.ndarray]] = {"probability": [], "logit": []}
        for start in range(0, n, batch_size):
            args = {k: raw_tensor(raw[k][start : start + batch_size]) for k in names}
            outputs = fn(**args)
            for key, chunks in parts.items():
                chunks.append(outputs[key].numpy())
        return {
            k: np.concatenate(v) if v else np.zeros(0, np.float32)
            for k, v in parts.items()
        }

    scorer.loaded = loaded  # type: ignore[attr-defined]  # keeps the resources alive
    return scorer


def savedmodel_bytes(path: str) -> int:
    """Bytes (sum of file sizes) of the SavedModel files a server loads.

    Counts ``saved_model.pb``, ``variables/``, ``assets/`` and ``fingerprint.pb``, not
    ``assets.extra/`` or ``export_metadata.json``.
    """
    total = 0
    for entry in SAVEDMODEL_ENTRIES:
        p = os.path.join(path, entry)
        if os.path.isfile(p):
            total += os.path.getsize(p)
        for root, _dirs, files in os.walk(p):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def read_export_metadata(export_dir: str) -> dict[str, Any]:
    """``export_metadata.json`` of a finished export.

    Args:
        export_dir: A directory written by
            :func:`trainer.serving.export.export_serving_model`.

    Returns:
        The export metadata (sizes, bits, compression, the check, the feature spec).

    Raises:
        FileNotFoundError: if the export is missing or unfinished.
    """
    path = os.path.join(export_dir, EXPORT_METADATA)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: {export_dir} is not a finished export"
        )
    with open(path, encoding="utf-8") as f:
        return dict(json.load(f))


# ------------------------------------------------------------------ ranking exports


class RankingScorer:
    """Scores raw (user, candidate items) of a ranking export.

    Args:
        export_dir: A directory written by
            :func:`trainer.serving.ranking_export.export_ranking_model`.
        batch_size: Users per signature call.

    Example:
        >>> scorer = RankingScorer(export_dir)               # doctest: +SKIP
        >>> scorer([6040, 1], [[1193, 661, 914], [3408]])     # doctest: +SKIP
        [array([...], dtype=float32), array([...], dtype=float32)]
    """

    def __init__(self, export_dir: str, batch_size: int = 1024) -> None:
        self.loaded = tf.saved_model.load(export_dir)
        self.fn = self.loaded.signatures[SERVING_SIGNATURE]
        self.batch_size = batch_size

    def score_matrix(
        self, users: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``users (B,)``, ``items (B, C)`` raw ids -> ``(logit, known)``, each (B, C)."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64).reshape(len(users), -1)
        logits, known = [], []
        for start in range(0, len(users), self.batch_size):
            rows = slice(start, start + self.batch_size)
            out = self.fn(user=tf.constant(users[rows]), items=tf.constant(items[rows]))
            logits.append(out["logit"].numpy())
            known.append(out["known"].numpy())
        if not logits:
            return np.zeros(items.shape, np.float32), np.zeros(items.shape, bool)
        return np.concatenate(logits), np.concatenate(known)

    def __call__(
        self, users: Sequence[int], candidates: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """One float32 logit array per user (NaN for unknown ids), lists of any size."""
        if len(users) != len(candidates):
            raise ValueError(
                f"{len(users)} users but {len(candidates)} candidate lists"
            )
        width = max((len(c) for c in candidates), default=0)
        pad = np.full((len(users), max(width, 1)), _PAD_ID, np.int64)
        for row, c in enumerate(candidates):
            pad[row, : len(c)] = c
        logit, known = self.score_matrix(np.asarray(users, np.int64), pad)
        scores = np.where(known, logit, np.nan).astype(np.float32)
        return [scores[row, : len(c)] for row, c in enumerate(candidates)]


# An id no data uses as a row id would do; unknown ids score NaN and are dropped.
_PAD_ID = np.iinfo(np.int64).min


def load_ranking_scorer(export_dir: str, batch_size: int = 1024) -> RankingScorer:
    """A :class:`RankingScorer` over a ranking export."""
    return RankingScorer(export_dir, batch_size)


class CandidatesFormatError(ValueError):
    """A candidates file line is not ``user<TAB>item item ...`` of integer ids."""


def read_candidates(path: str) -> tuple[list[int], list[list[int]]]:
    """Reads ``user<TAB>item item ...`` lines (raw integer ids; blank lines skipped).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CandidatesFormatError: naming the file and the first bad line.
    """
    users: list[int] = []
    candidates: list[list[int]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            user, sep, rest = line.rstrip("\n").partition("\t")
            try:
                if not sep:
                    raise ValueError("no TAB")
                ids = [int(x) for x in rest.split()]
                users.append(int(user))
            except ValueError:
                raise CandidatesFormatError(
                    f"{path}: line {number}: expected 'user<TAB>item item ...' of "
                    f"integer ids, got {line[:80]!r}"
                ) from None
            candidates.append(ids)
    return users, candidates


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer.serving.scoring",
        description="Score raw (user, candidate items) with a ranking export.",
    )
    p.add_argument("--export", required=True, help="ranking export directory")
    p.add_argument(
        "--candidates", required=True, help="file of 'user<TAB>item item ...' lines"
    )
    p.add_argument("--out", help="write 'user<TAB>item<TAB>logit' here (else stdout)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 with one ``error:`` line)."""
    args = _parse_args(argv)
    try:
        meta = read_export_metadata(args.export)
        if "num_items" not in meta:
            raise ValueError(
                f"{args.export} is not a ranking export (no num_items in "
                f"{EXPORT_METADATA}); score wide-and-deep exports with load_scorer"
            )
        users, candidates = read_candidates(args.candidates)
        scores = load_ranking_scorer(args.export)(users, candidates)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lines = [
        f"{u}\t{i}\t{s:.7g}"
        for u, items, row in zip(users, candidates, scores, strict=True)
        for i, s in zip(items, row.tolist(), strict=True)
    ]
    text = "\n".join(lines) + ("\n" if lines else "")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    unknown = sum(int(np.isnan(r).sum()) for r in scores)
    if unknown:
        print(f"{unknown} pairs with an unknown user or item: nan", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
