"""Tests for the synthetic stream (beam_jobs.synthetic, beam_jobs.synthetic_model)."""

from __future__ import annotations

import datetime as dt
import os

import hypothesis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from beam_jobs import synthetic as syn
from beam_jobs import synthetic_model as model
from trainer.contracts import events

# default vocabularies (2M users, 1M items, ...), few events: fast but realistic
DEFAULT_VOCAB = syn.SyntheticConfig(seed=7, events_per_hour=20_000)
SMALL = syn.SyntheticConfig(
    seed=3,
    events_per_hour=2_000,
    num_users=5_000,
    num_items=2_000,
    num_publishers=300,
    num_categories=50,
    num_devices=5,
    num_countries=20,
)
CHURNED = ("user_id", "item_id", "publisher")


@pytest.fixture(scope="module")
def hours() -> list[pa.Table]:
    """Hours 0..3 of the default-vocabulary stream."""
    return [syn.generate_hour(DEFAULT_VOCAB, h) for h in range(4)]


def _ids(table: pa.Table, feature: str) -> np.ndarray:
    prefix = dict((n, p) for n, p, *_ in syn.CATEGORICAL_FEATURES)[feature]
    return syn._parse_ids(table[feature], prefix)


def _top(values: np.ndarray, k: int) -> set[int]:
    uniq, counts = np.unique(values, return_counts=True)
    return set(uniq[np.argsort(-counts, kind="stable")[:k]].tolist())


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("seed", -1),
        ("events_per_hour", -5),
        ("num_users", 0),
        ("num_devices", True),
        ("zipf_exponent", 0.0),
        ("new_id_fraction", 0.9),
        ("drift_per_hour", -0.1),
        ("label_base_rate", 1.0),
        ("label_signal", float("nan")),
        ("start_hour", dt.datetime(2026, 1, 1)),  # naive
        ("start_hour", dt.datetime(2026, 1, 1, 0, 30, tzinfo=dt.UTC)),
    ],
)
def test_config_rejects_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        syn.SyntheticConfig(**{field: value})


def test_generate_hour_rejects_negative_hour():
    with pytest.raises(ValueError, match="hour_index"):
        syn.generate_hour(SMALL, -1)


# ----------------------------------------------------------------- schema, determinism


def test_schema_is_the_event_schema_of_the_synthetic_spec(synthetic_spec, hours):
    assert syn.SCHEMA == events.schema_for(synthetic_spec)
    assert hours[0].schema == events.schema_for(synthetic_spec)
    assert hours[0].num_rows == DEFAULT_VOCAB.events_per_hour
    clean, dead = events.validate_table(hours[0], synthetic_spec, "mem")
    assert dead == [] and clean.num_rows == hours[0].num_rows


def test_values_are_prefixed_ids_and_never_null(hours):
    for name, prefix, *_ in syn.CATEGORICAL_FEATURES:
        col = hours[1][name]
        assert col.null_count == 0
        assert pc.all(pc.match_substring_regex(col, f"^{prefix}[0-9]+$")).as_py(), name
    position = hours[1]["position"].to_numpy()
    assert set(np.unique(position)) == set(range(1, 11))
    assert (hours[1]["price"].to_numpy() > 0).all()


def test_timestamps_are_sorted_within_the_hour(hours):
    for h, table in enumerate(hours):
        ts = table["event_ts"].to_numpy()
        start = int(DEFAULT_VOCAB.hour(h).timestamp())
        assert start <= ts.min() and ts.max() < start + 3600
        assert (np.diff(ts) >= 0).all()
        assert ts.max() - ts.min() > 3500  # uniform over the hour, not bunched


def test_same_seed_same_table_other_seed_different():
    a = syn.generate_hour(SMALL, 5)
    assert a.equals(syn.generate_hour(SMALL, 5))
    other = syn.generate_hour(syn.SyntheticConfig(**{**SMALL.__dict__, "seed": 4}), 5)
    assert not a.equals(other)
    assert not a["user_id"].equals(other["user_id"])
    assert not a.equals(syn.generate_hour(SMALL, 6))


def test_hour_bytes_do_not_depend_on_other_hours(tmp_path):
    in_order = syn.write_stream(str(tmp_path / "a"), SMALL, hours=3)
    model.ranked_ids.cache_clear()
    syn._bias.cache_clear()
    alone = syn.write_stream(str(tmp_path / "b"), SMALL, hours=1, first_hour=2)
    assert [s["hour"] for s in in_order] == [
        "2026-01-01T00",
        "2026-01-01T01",
        "2026-01-01T02",
    ]
    with open(in_order[2]["uri"], "rb") as f, open(alone[0]["uri"], "rb") as g:
        assert f.read() == g.read()


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**32), hour=st.integers(0, 5_000))
def test_any_hour_holds_only_ids_alive_in_that_hour(seed, hour):
    config = syn.SyntheticConfig(
        **{**SMALL.__dict__, "seed": seed, "events_per_hour": 300}
    )
    table = syn.generate_hour(config, hour)
    assert table.num_rows == 300
    for name in CHURNED:
        alive, _ = model.slot_ids(syn.popularity(config, name), hour)
        assert np.isin(_ids(table, name), alive).all()


# ------------------------------------------------------------------------ power law


@pytest.mark.parametrize("feature", ["user_id", "item_id", "publisher"])
def test_top_one_percent_of_values_cover_a_large_share(hours, feature):
    values = _ids(hours[0], feature)
    uniq, counts = np.unique(values, return_counts=True)
    top = np.sort(counts)[::-1][: max(1, len(uniq) // 100)]
    assert top.sum() / counts.sum() > 0.3
    assert len(uniq) > 2_000  # and a long tail of distinct values


def test_rank_frequency_slope_matches_the_exponent(hours):
    counts = np.sort(np.unique(_ids(hours[0], "item_id"), return_counts=True)[1])[::-1]
    ranks = np.arange(1, 51)
    slope = np.polyfit(np.log(ranks), np.log(counts[:50]), 1)[0]
    assert slope == pytest.approx(-DEFAULT_VOCAB.zipf_exponent, abs=0.25)


def test_rank_cdf_is_zipf():
    cdf = model.rank_cdf(1_000, 1.1)
    weights = np.diff(cdf, prepend=0.0)
    np.testing.assert_allclose(weights[[0, 9, 99]], [1.0, 10**-1.1, 100**-1.1])


# ------------------------------------------------------------------ new ids and drift


@pytest.mark.parametrize("feature", CHURNED)
def test_new_ids_are_born_every_hour_and_appear(hours, feature):
    pop = syn.popularity(DEFAULT_VOCAB, feature)
    for h in range(3):
        seen = np.unique(np.concatenate([_ids(t, feature) for t in hours[: h + 1]]))
        now = _ids(hours[h + 1], feature)
        alive_before, _ = model.slot_ids(pop, h)
        alive_now, age = model.slot_ids(pop, h + 1)
        born = alive_now[age == 0]
        assert len(born) == pop.new_per_hour > 0
        assert (born >= pop.vocab_size).all()  # beyond the initial vocabulary
        # each born id took over a slot from its previous generation
        np.testing.assert_array_equal(
            alive_before[born % pop.vocab_size], born - pop.vocab_size
        )
        new = np.setdiff1d(now, seen)
        assert np.isin(new, born).any(), f"no id born at hour {h + 1} was sampled"


def test_newborn_ids_become_popular():
    pop = syn.popularity(DEFAULT_VOCAB, "item_id")
    hour = 500
    ids, age = model.slot_ids(pop, hour)
    young = set(ids[age < 48].tolist())
    head = model.ranked_ids(pop, hour)[:100]
    share_young = np.isin(head, list(young)).mean()
    assert 0.1 < share_young < 0.9  # the head mixes new and established ids


@pytest.mark.parametrize("feature", ["user_id", "item_id"])
def test_popularity_drifts_smoothly(feature):
    pop = syn.popularity(DEFAULT_VOCAB, feature)
    for h in (0, 100):
        now = set(model.ranked_ids(pop, h)[:100].tolist())
        nxt = set(model.ranked_ids(pop, h + 1)[:100].tolist())
        assert 0.3 < _jaccard(now, nxt) < 1.0


def test_no_drift_and_no_churn_keeps_the_order():
    config = syn.SyntheticConfig(
        **{**SMALL.__dict__, "drift_per_hour": 0.0, "new_id_fraction": 0.0}
    )
    pop = syn.popularity(config, "user_id")
    np.testing.assert_array_equal(model.ranked_ids(pop, 3), model.ranked_ids(pop, 40))


def test_observed_head_drifts_between_consecutive_hours(hours):
    a, b = (_top(_ids(t, "item_id"), 100) for t in hours[:2])
    assert 0.3 < _jaccard(a, b) < 1.0


def test_descending_order_matches_a_stable_argsort():
    score = np.random.default_rng(0).standard_normal(10_000)
    score[[3, 8]] = 0.5  # a tie: broken by index
    order = model._descending_order(score)
    np.testing.assert_array_equal(order, np.argsort(-score, kind="stable"))


# -------------------------------------------------------------------------- labels


def test_labels_carry_the_hidden_signal(hours):
    for table in hours:
        y = table["label"].to_numpy()
        p = syn.true_probability(DEFAULT_VOCAB, table)
        assert abs(y.mean() - DEFAULT_VOCAB.label_base_rate) < 0.05
        assert abs(p.mean() - y.mean()) < 0.02
        assert roc_auc_score(y, p) > 0.7


def test_no_signal_means_coin_flip_labels():
    flat = syn.SyntheticConfig(
        **{**SMALL.__dict__, "events_per_hour": 20_000, "label_signal": 0.0}
    )
    table = syn.generate_hour(flat, 1)
    y = table["label"].to_numpy()
    assert np.ptp(syn.true_probability(flat, table)) == 0.0
    assert abs(y.mean() - flat.label_base_rate) < 0.02
    informed = syn.SyntheticConfig(**{**flat.__dict__, "label_signal": 1.0})
    assert abs(roc_auc_score(y, syn.true_probability(informed, table)) - 0.5) < 0.03


def test_true_probability_rejects_foreign_values(hours):
    table = hours[0].slice(0, 3)
    bad = table.set_column(2, "user_id", pa.array(["x1", "u2", "u3"]))
    with pytest.raises(ValueError, match="prefix 'u'"):
        syn.true_probability(DEFAULT_VOCAB, bad)


def test_price_is_a_property_of_the_item(hours):
    table = hours[0]
    items, price = _ids(table, "item_id"), np.log(table["price"].to_numpy())
    uniq, inverse = np.unique(items, return_inverse=True)
    same = items == uniq[np.argmax(np.bincount(inverse))]  # the most frequent item
    assert same.sum() > 50
    assert np.std(price[same]) < 0.2 < np.std(price)


# ----------------------------------------------------------------------------- CLI


def test_cli_writes_readable_hours(tmp_path, capsys, synthetic_spec):
    out = str(tmp_path / "stream")
    argv = ["--out", out, "--hours", "2", "--events-per-hour", "500", "--seed", "3"]
    assert syn.main([*argv, "--start-hour", "2026-02-01T23"]) == 0
    printed = capsys.readouterr().out
    assert "2026-02-01T23" in printed and "2026-02-02T00" in printed
    assert "label_mean" in printed.splitlines()[0]
    assert events.list_partitions(out) == events.parse_hour_range(
        "2026-02-01T23:2026-02-02T00"
    )
    table, dead = events.read_partition(
        out, events.parse_hour("2026-02-02T00"), synthetic_spec
    )
    assert dead == []
    config = syn.SyntheticConfig(
        seed=3, events_per_hour=500, start_hour=events.parse_hour("2026-02-01T23")
    )
    assert table.equals(syn.generate_hour(config, 1))


def test_cli_jsonl_round_trips(tmp_path, capsys, synthetic_spec):
    out = str(tmp_path / "jsonl")
    argv = [
        "--out",
        out,
        "--hours",
        "1",
        "--events-per-hour",
        "200",
        "--format",
        "jsonl",
    ]
    assert syn.main(argv) == 0
    hour = syn.DEFAULT_START_HOUR
    files = events.partition_files(out, hour)
    assert [os.path.basename(f) for f in files] == ["part-00000.jsonl"]
    table, dead = events.read_partition(out, hour, synthetic_spec)
    assert dead == [] and table.num_rows == 200
    expected = syn.generate_hour(syn.SyntheticConfig(seed=0, events_per_hour=200), 0)
    assert table.equals(expected)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hours", "-1"], "must be >= 1"),
        (["--hours", "2", "--events-per-hour", "-5"], "must be >= 0"),
        (["--hours", "1", "--start-hour", "2026-13-01T00"], "invalid hour"),
        (["--hours", "1", "--format", "csv"], "invalid choice"),
        (["--hours", "1", "--label-base-rate", "1.5"], "label_base_rate"),
        (["--hours", "1", "--spec", "/nonexistent.yaml"], "not found"),
    ],
)
def test_cli_bad_arguments_exit_non_zero(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        syn.main(["--out", str(tmp_path), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
