"""pipeline.demo: the make-run table and report from per-hour records."""

from __future__ import annotations

from pipeline import demo


def _rec(hour: str, rce: float, size: int, bits: int) -> dict:
    return {
        "hour": hour,
        "metrics": {"rce": rce},
        "size_bytes": size,
        "serving_bits": bits,
        "blessed": True,
        "registered_version": 1,
    }


RESULTS = {
    "full": [
        _rec("2026-01-01T00", 2.0, 1000, 800),
        _rec("2026-01-01T01", 3.0, 2000, 1600),
    ],
    "hybrid": [
        _rec("2026-01-01T00", 2.1, 500, 200),
        _rec("2026-01-01T01", 2.9, 500, 200),
    ],
    "mgqe": [
        _rec("2026-01-01T00", 1.9, 250, 400),
        _rec("2026-01-01T01", 3.1, 400, 400),
    ],
}


def test_table_has_rce_bytes_and_ratios_per_hour():
    lines = demo.table(RESULTS).splitlines()
    assert len(lines) == 3 and "hybrid/full bits" in lines[0]
    row = lines[2].split()
    assert row[:4] == ["2026-01-01T01", "3.000", "2.900", "3.100"]
    assert row[4:7] == ["2,000", "500", "400"]
    assert row[7:] == ["0.250", "0.200", "0.125", "0.250"]  # bytes, then bits ratios


def test_table_marks_a_failed_hour():
    failed = {"hour": "2026-01-01T01", "status": "failed", "reason": "crash"}
    results = {**RESULTS, "mgqe": [RESULTS["mgqe"][0], failed]}
    row = demo.table(results).splitlines()[2].split()
    assert row[:4] == ["2026-01-01T01", "3.000", "2.900", "FAILED"]
    assert row[6] == "0" and row[8] == "-"  # no size, no ratio for the failed hour


def test_report_embeds_the_plots(tmp_path):
    path = demo.write_report(str(tmp_path), RESULTS)
    html = open(path, encoding="utf-8").read()
    assert html.count("data:image/png;base64,") == 3 and "2026-01-01T01" in html
    assert "synthetic stream" in html


def test_bad_counts_are_one_error_line(capsys):
    import argparse

    args = argparse.Namespace(out="x", hours=0, events_per_hour=10, seed=0)
    assert demo.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --hours and --events-per-hour must be >= 1"]


def test_variants_point_at_existing_experiments():
    import os

    assert [v for v, _ in demo.VARIANTS] == ["full", "hybrid", "mgqe"]
    assert all(os.path.isfile(p) for _, p in demo.VARIANTS)
