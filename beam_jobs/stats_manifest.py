"""The stats run's manifest: per-file and per-hour accounting and the bad-share check.

Every file of the run contributes ``read = events + dead`` (``read`` is None for a
file whose rows are unknown, e.g. a Parquet file with a broken footer); every hour sums
its files. ``--max-bad-share`` applies to each hour separately, and an hour's share is
at least the share of its files with unknown rows (such a file counts as a whole bad
file, never as one record).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from trainer.contracts import artifacts, events
from trainer.contracts.features import FeatureSpec
from trainer.contracts.fingerprint import fingerprint


class BadInputError(RuntimeError):
    """Too many malformed records; the message names the worst files."""


def check_bad_share(manifest: dict[str, Any], out: str, max_share: float) -> None:
    """Fails when any hour's bad share exceeds ``max_share``; names the worst hour."""
    over = [(h, e) for h, e in manifest["hours"].items() if e["bad_share"] > max_share]
    if not over:
        return
    hour, entry = max(over, key=lambda he: (he[1]["bad_share"], he[0]))
    files = [
        f for f in manifest["file_counts"] if f["hour"] == hour and f["bad_share"] > 0
    ]
    files.sort(key=lambda f: (-f["bad_share"], f["source"]))
    worst = ", ".join(
        f"{f['source']} ("
        + (
            "unreadable, rows unknown"
            if f["read"] is None
            else f"{f['dead']} of {f['read']} bad"
        )
        + ")"
        for f in files[:3]
    )
    others = f"; {len(over) - 1} more hours over the limit" if len(over) > 1 else ""
    unknown = (
        f", {entry['unknown_row_files']} of {entry['files']} files unreadable"
        if entry["unknown_row_files"]
        else ""
    )
    raise BadInputError(
        f"hour {hour}: {entry['bad_share']:.2%} of {entry['read']} "
        f"records are malformed{unknown} (max {max_share:.2%}); worst files: {worst}"
        f"{others}; dead letters in {artifacts.dead_letter_dir(out)}"
    )


def _file_entry(source: str, counts: dict[str, Any]) -> dict[str, Any]:
    read, dead = counts["read"], counts["dead"]
    hour = events.hour_of_path(source)
    return {
        "source": source,
        "hour": events.format_hour(hour) if hour else None,
        "read": read,
        "events": counts["good"],
        "dead": dead,
        "bad_share": 1.0 if read is None else (dead / read if read else 0.0),
    }


def _hour_entries(
    files: Sequence[dict[str, Any]], hours: Sequence[dt.datetime]
) -> dict[str, dict[str, Any]]:
    """Per hour: ``read = good + dead`` over its readable files, and its bad share.

    A file whose rows are unknown counts as a whole bad file: the hour's bad share is
    at least the share of such files among the hour's files.
    """
    out = {
        events.format_hour(h): {
            "files": 0,
            "read": 0,
            "events": 0,
            "dead": 0,
            "unknown_row_files": 0,
        }
        for h in hours
    }
    for f in files:
        e = out.setdefault(
            f["hour"],
            {"files": 0, "read": 0, "events": 0, "dead": 0, "unknown_row_files": 0},
        )
        e["files"] += 1
        e["events"] += f["events"]
        if f["read"] is None:
            e["unknown_row_files"] += 1
        else:
            e["read"] += f["read"]
            e["dead"] += f["dead"]
    for e in out.values():
        share = e["dead"] / e["read"] if e["read"] else 0.0
        if e["unknown_row_files"]:
            share = max(share, e["unknown_row_files"] / e["files"])
        e["bad_share"] = share
    return out


def build_manifest(
    items: Sequence[Sequence[Any]],
    spec: FeatureSpec,
    hours: Sequence[dt.datetime],
    approx_capacity: int | None,
    previous: dict[str, Any] | None,
    skipped: Sequence[events.SkippedFile] = (),
) -> dict[str, Any]:
    """The manifest from the run summary rows (``[kind, name, payload]``).

    ``bad_share`` is the worst hour's (:func:`_hour_entries`); ``hours`` and
    ``file_counts`` state ``read = events + dead`` per hour and per file.
    """
    by_kind: dict[str, dict[str, Any]] = {k: {} for k in ("feature", "numeric", "file")}
    dead_files = []
    for kind, name, payload in items:
        if kind == "dead":
            dead_files.append(payload)
        else:
            by_kind[kind][name] = payload
    files = sorted(
        (_file_entry(s, c) for s, c in by_kind["file"].items()),
        key=lambda f: f["source"],
    )
    good = sum(f["events"] for f in files)
    bad = sum(f["dead"] for f in files)
    per_hour = _hour_entries(files, hours)
    worst = sorted(
        (f for f in files if f["bad_share"] > 0),
        key=lambda f: (-f["bad_share"], f["source"]),
    )
    content = {
        "source_hours": [events.format_hour(h) for h in hours],
        "spec_name": spec.name,
        "features": by_kind["feature"],
        "numeric": by_kind["numeric"],
    }
    digest = fingerprint(content, length=64)  # the whole sha256 of canonical JSON
    now = dt.datetime.now(dt.UTC)
    return {
        "format_version": artifacts.FORMAT_VERSION,
        "version": f"{now:%Y%m%dT%H%M%SZ}-{digest[:12]}",
        "content_hash": digest,
        "created_at": now.isoformat(timespec="seconds"),
        **content,
        "spec": spec.to_dict(),
        "mode": "batch" if previous is None else "continuous",
        "previous": previous,
        "counting": {
            "method": "exact" if approx_capacity is None else "misra_gries",
            "capacity": approx_capacity,
        },
        "events": good,
        "dead_letters": bad,
        "bad_share": max((e["bad_share"] for e in per_hour.values()), default=0.0),
        "files": len(files),
        "hours": per_hour,
        "file_counts": files,
        "skipped_files": [s.to_dict() for s in skipped],
        "worst_files": worst[:10],
        "dead_letter_files": sorted(dead_files),
    }
