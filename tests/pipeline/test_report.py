"""pipeline.report: the run report from hour records, stats manifests and blessings
laid out on disk as a run leaves them; a failed hour shows as failed with its reason."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from pipeline import report

HOURS = ("2026-01-01T00", "2026-01-01T01")


class _Page(HTMLParser):
    """Tables by id (rows of cell texts), image sources and link targets."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None


def _hour(tmp_path, variant: str, i: int, rce: float, bits: int) -> dict:
    run = tmp_path / variant / "kfp-root" / f"run{i}"
    stats, evaluation = run / "compute-stats" / "stats", run / "evaluate-model"
    (evaluation / "evaluation").mkdir(parents=True)
    stats.mkdir(parents=True)
    single = {"buckets": 64, "measured_rate": 0.25, "expected_rate": 0.2}
    double = {"buckets": 4096, "measured_rate": 0.001, "expected_rate": 0.002}
    manifest = {
        "events": 2000,
        "features": {
            "item_id": {
                "treatment": variant if variant != "full" else "full",
                "distinct": 900 + i,
                "vocab_size": 100,
                "k": 100,
                "oov_share": 0.125,
                "diagnostics": {"tail_values": 800, "single": single, "double": double},
                "continuous": None
                if i == 0
                else {"churn": 0.5, "promoted": 7, "evicted": 6},
            }
        },
    }
    (stats / "manifest.json").write_text(json.dumps(manifest))
    (evaluation / "evaluation" / "blessing.json").write_text(
        json.dumps({"blessed": True, "reasons": ["auc 0.61 >= 0.5", "beats v1"]})
    )
    return {
        "hour": HOURS[i],
        "stats": str(stats),
        "evaluation": str(evaluation / "evaluation"),
        "size_bytes": bits // 4,
        "serving_bits": bits,
        "metrics": {"rce": rce, "auc": 0.6, "log_loss": 0.47, "item_id/tail/rce": -1.5},
        "blessed": True,
        "registered_version": i + 1,
        "seconds": 40.0,
        "stage_seconds": {"stats": 3.0, "train": 20.0, "evaluate": 5.0},
    }


def test_report_shows_every_section_and_the_failed_hour(tmp_path):
    log = tmp_path / "mgqe" / "logs" / HOURS[1] / "compute-stats.log"
    log.parent.mkdir(parents=True)
    log.write_text("MissingPartitionError: no partition hour=01\n")
    results = {
        "full": [
            _hour(tmp_path, "full", 0, 2.0, 8_000_000),
            _hour(tmp_path, "full", 1, 3.0, 8_000_000),
        ],
        "mgqe": [
            _hour(tmp_path, "mgqe", 0, 2.5, 2_000_000),
            {
                "hour": HOURS[1],
                "status": "failed",
                "failed_task": "compute-stats",
                "reason": "MissingPartitionError: no partition hour=01",
                "log": str(log),
                "seconds": 4.0,
                "stage_seconds": {"stats": 4.0},
            },
        ],
    }
    path = report.write_report(str(tmp_path), results)
    page = _Page()
    page.feed(open(path, encoding="utf-8").read())

    rows = {(r[0], r[1]): r for r in page.tables["results"][1:]}
    assert rows[(HOURS[0], "mgqe")][2:10] == [
        "ok",
        "2.500",
        "0.6000",
        "0.4700",
        "500,000",
        "2,000,000",
        "0.250",
        "10.00",
    ]  # fmt: skip  (bits / full = 2M / 8M; RCE per serving MB = 2.5 / 0.25 MB)
    assert rows[(HOURS[1], "mgqe")][2] == "failed in compute-stats"
    slices = {(r[0], r[1]): r[2:] for r in page.tables["slices"][2:]}
    assert slices[("item_id", "tail")] == ["-1.500"] * 3 + ["-"]
    assert slices[("item_id", "unseen")] == ["-"] * 4
    hashing = page.tables["hashing"]
    assert hashing[2][:4] == ["full", HOURS[1], "item_id", "full"]
    assert hashing[2][6:] == [
        "0.125",
        "800",
        "64",
        "0.25 / 0.2",
        "0.001 / 0.002",
        "0.500",
        "7",
        "6",
    ]
    stages = {(r[0], r[1]): r[2:] for r in page.tables["stages"][1:]}
    assert stages[(HOURS[0], "full")] == ["3.0", "-", "20.0", "-", "5.0", "-", "28.0"]
    registry = {(r[0], r[1]): r for r in page.tables["registry"][1:]}
    assert registry[("full", HOURS[1])][2:] == [
        "True",
        "2",
        "auc 0.61 >= 0.5; beats v1",
    ]
    assert "MissingPartitionError" in registry[("mgqe", HOURS[1])][4]
    assert page.tables["failures"][1][:3] == ["mgqe", HOURS[1], "compute-stats"]

    assert len(page.images) == 3
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "mgqe/logs/2026-01-01T01/compute-stats.log" in page.links
    assert "full/kfp-root/run1/evaluate-model/evaluation/report.html" in page.links
    assert not [u for u in page.links if u.startswith(("http:", "https:", "/"))]
    assert f"tensorboard --logdir {tmp_path}" in open(path, encoding="utf-8").read()
