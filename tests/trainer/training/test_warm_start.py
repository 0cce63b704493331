"""Tests of trainer.training.warm_start: hour h model -> hour h+1 across a continuous stats run.

Two hand-made hours (200 events each, every count chosen) make the dictionary changes
certain. With the stats job's default 24 h half-life (decay 0.9715 per hour):

* user_id (hybrid, k = 3): u1, u2 stay; u3 is evicted; u6, double-hashed in hour 0,
  is promoted into u3's row;
* item_id (MGQE, k = 8, head = top 25 % = 2 rows): i8 is evicted, i9 promoted, and
  i3 enters the head tier while i2 leaves it;
* device (full, k = 4): d4 is evicted, d5 promoted; country (DPQ) keeps its values;
* price has the same values in both hours, so its bucket boundaries do not move.
"""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from tests.trainer import wide_deep_testing as wdt
from trainer import preprocessing, task
from trainer.contracts import artifacts
from trainer.contracts.features import transformed_name
from trainer.data import examples as data
from trainer.models.wide_deep import WideAndDeep, dummy_inputs
from trainer.training import optimizers
from trainer.training import warm_start as warm

HOURS = ("2026-01-01T00", "2026-01-01T01")
COUNTS = (
    {
        "user_id": {
            "u1": 60,
            "u2": 50,
            "u3": 40,
            "u6": 10,
            "u7": 10,
            "u8": 10,
            "u9": 20,
        },
        "item_id": {
            "i1": 50,
            "i2": 40,
            "i3": 30,
            "i4": 25,
            "i5": 20,
            "i6": 15,
            "i7": 10,
            "i8": 5,
            "i9": 5,
        },
        "device": {"d1": 80, "d2": 60, "d3": 30, "d4": 20, "d5": 10},
        "country": {"c1": 100, "c2": 50, "c3": 30, "c4": 20},
        "publisher": {f"p{i}": 20 for i in range(10)},
        "category": {f"k{i}": 40 for i in range(5)},
    },
    {
        "user_id": {"u1": 60, "u2": 50, "u6": 80, "u7": 10},
        "item_id": {
            "i1": 60,
            "i3": 70,
            "i2": 5,
            "i4": 20,
            "i5": 15,
            "i6": 10,
            "i7": 10,
            "i9": 10,
        },
        "device": {"d1": 80, "d2": 60, "d3": 20, "d5": 40},
        "country": {"c1": 100, "c2": 50, "c3": 30, "c4": 20},
        "publisher": {f"p{i}": 25 for i in range(8)},
        "category": {f"k{i}": 50 for i in range(4)},
    },
)
N = 200
# Tables indexed by dictionary row, per feature: (layer dict, weight attribute).
ROW_TABLES = {
    "user_id": [("deep_embeddings", "dictionary"), ("wide_tables", "dictionary")],
    "item_id": [("deep_embeddings", "embeddings"), ("wide_tables", "embeddings")],
    "device": [("deep_embeddings", "embeddings"), ("wide_tables", "embeddings")],
    "country": [("deep_embeddings", "embeddings"), ("wide_tables", "embeddings")],
}


def _hour_table(hour: int) -> pa.Table:
    from beam_jobs import synthetic

    rng = np.random.default_rng(hour)
    cols = {}
    for name, counts in COUNTS[hour].items():
        values = np.repeat(list(counts), list(counts.values()))
        assert len(values) == N, name
        cols[name] = rng.permutation(values).tolist()
    start = int(dt.datetime(2026, 1, 1, hour, tzinfo=dt.UTC).timestamp())
    cols["event_ts"] = [start + 10 * i for i in range(N)]
    cols["price"] = [float(i % 20 + 1) for i in range(N)]
    cols["position"] = [float(i % 10 + 1) for i in range(N)]
    hot = np.isin(cols["user_id"], ["u1", "u6"]) & np.isin(cols["device"], ["d1", "d5"])
    cols["label"] = (hot | (rng.random(N) < 0.15)).astype("float32").tolist()
    return pa.Table.from_pydict(cols, schema=synthetic.SCHEMA)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Hand-made hours; stats h0, continuous stats h1 (--previous), batch stats h1;
    the hour-0 model trained by trainer.task."""
    from beam_jobs import feature_stats
    from trainer.contracts import events

    root = tmp_path_factory.mktemp("warm")
    logs = str(root / "logs")
    for h in (0, 1):
        events.write_partition(
            logs, dt.datetime(2026, 1, 1, h, tzinfo=dt.UTC), _hour_table(h)
        )
    stats0 = wdt.tiny_stats(logs, HOURS[0], str(root / "stats0"))
    stats1 = str(root / "stats1")
    feature_stats.run(
        [
            "--logs",
            logs,
            "--hours",
            HOURS[1],
            "--spec",
            str(wdt.TINY_SPEC),
            "--out",
            stats1,
            "--previous",
            stats0,
            "--no-diagnostics",
        ]
    )
    batch1 = wdt.tiny_stats(logs, HOURS[1], str(root / "batch1"))
    prev = str(root / "model0")
    config = wdt.tiny_config(**{"training.epochs": 2})
    task.run(config, logs, stats0, prev, hours=HOURS[0])
    return {
        "root": root,
        "logs": logs,
        "stats0": stats0,
        "stats1": stats1,
        "batch1": batch1,
        "prev": prev,
        "config": config,
    }


def _restore(prev_dir):
    model, opts = warm._restore_previous(prev_dir)  # what warm start itself reads
    return model, [
        (opts[0], lambda: model.wide_variables),
        (opts[1], lambda: model.deep_variables),
    ]


def _warm(world, artifact_dir):
    """A new model on ``artifact_dir``, built as trainer.task does, warm-started."""
    spec, cfg = wdt.tiny_spec(), world["config"]
    tf.keras.utils.set_random_seed(123)  # fresh rows differ from the previous init
    transform = preprocessing.FeatureTransform(spec, artifact_dir)
    rows = data.table_rows(spec, transform)
    model = WideAndDeep(
        spec.to_dict(), rows, cfg.model.hidden_units, name="wide_and_deep"
    )
    model(dummy_inputs(spec))
    warm.set_tiers_from_artifacts(model, spec, artifact_dir)
    groups = [
        (optimizers.make_optimizer(cfg.wide_optimizer), lambda: model.wide_variables),
        (optimizers.make_optimizer(cfg.optimizer), lambda: model.deep_variables),
    ]
    for opt, variables in groups:
        opt.build(variables())
    report = warm.warm_start(model, groups, world["prev"], spec, artifact_dir)
    return model, groups, report


@pytest.fixture(scope="module")
def previous(world):
    return _restore(world["prev"])


@pytest.fixture(scope="module", params=["stats1", "batch1"])
def warmed(request, world):
    return request.param, *_warm(world, world[request.param])


def _slots(groups, var):
    for opt, variables in groups:
        if any(v is var for v in variables()):
            return opt.slots(var)
    raise KeyError(var.path)


def test_the_hand_made_hours_change_the_dictionaries_as_designed(world):
    remap = artifacts.load_remap(world["stats1"], "user_id")
    assert remap.promoted == ["u6"] and remap.evicted == ["u3"]
    assert artifacts.read_vocab(world["stats0"], "user_id") == ["u1", "u2", "u3"]
    assert artifacts.read_vocab(world["stats1"], "user_id") == ["u1", "u2", "u6"]
    assert artifacts.read_vocab(world["batch1"], "user_id") == ["u6", "u1", "u2"]
    item = artifacts.load_remap(world["stats1"], "item_id")
    assert item.promoted == ["i9"] and item.evicted == ["i8"]
    device = artifacts.load_remap(world["stats1"], "device")
    assert device.promoted == ["d5"] and device.evicted == ["d4"]
    assert artifacts.load_remap(world["stats1"], "country").old_to_new == {
        0: 0,
        1: 1,
        2: 2,
        3: 3,
    }
    assert artifacts.load_boundaries(
        world["stats0"], "price"
    ) == artifacts.load_boundaries(world["stats1"], "price")


def test_retained_values_keep_their_rows_and_optimizer_slots(warmed, previous, world):
    name, model, groups, _ = warmed
    prev, prev_groups = previous
    for feature, tables in ROW_TABLES.items():
        old_vocab = artifacts.read_vocab(world["stats0"], feature)
        new_vocab = artifacts.read_vocab(world[name], feature)
        pairs = [
            (old_vocab.index(v), new_vocab.index(v))
            for v in new_vocab
            if v in old_vocab
        ]
        pairs.append((len(old_vocab), len(new_vocab)))  # the OOV row
        if name == "stats1":  # the Beam job's remap says the same
            remap = artifacts.load_remap(world["stats1"], feature)
            assert sorted(pairs[:-1]) == sorted(remap.old_to_new.items())
        elif feature != "country":  # batch mode ranks rows by frequency: they move
            assert any(o != n for o, n in pairs), feature
        for where, attr in tables:
            new_var = getattr(getattr(model, where)[feature], attr)
            old_var = getattr(getattr(prev, where)[feature], attr)
            new_slots, old_slots = _slots(groups, new_var), _slots(prev_groups, old_var)
            assert set(new_slots) == set(old_slots) and new_slots
            old_w, new_w = old_var.numpy(), new_var.numpy()
            for o, n in pairs:
                np.testing.assert_array_equal(
                    new_w[n], old_w[o], err_msg=f"{new_var.path}[{n}]"
                )
                for slot in new_slots:
                    np.testing.assert_array_equal(
                        new_slots[slot].numpy()[n],
                        old_slots[slot].numpy()[o],
                        err_msg=f"{new_var.path}[{n}] {slot}",
                    )
            # Slots were really trained (else the check above proves little).
            acc = old_slots["accumulator"].numpy()[pairs[0][0]]
            assert np.all(acc > 0.1 + 1e-6), new_var.path


def test_new_full_dictionary_rows_start_fresh(warmed, world):
    name, model, groups, report = warmed
    new_vocab = artifacts.read_vocab(world[name], "device")
    row = new_vocab.index("d5")
    var = model.deep_embeddings["device"].embeddings
    fresh = np.full(2, 0.1, dtype="float32")  # initial_accumulator_value
    np.testing.assert_array_equal(
        _slots(groups, var)["accumulator"].numpy()[row], fresh
    )
    assert report["features"]["device"]["fresh"] == 1
    assert report["features"]["device"]["promoted_from_hash"] == 0


def test_hash_tables_and_dense_layers_are_copied(warmed, previous):
    _, model, groups, report = warmed
    prev, prev_groups = previous
    old = {v.path: v for v in prev.weights}
    copied = [
        v
        for v in model.weights
        if not any(
            v.path.startswith(f"{p}_{f}/") for f in ROW_TABLES for p in ("emb", "wide")
        )
        or "/hashed/" in v.path
        or v.path.endswith("/centroids")
    ]
    paths = {v.path for v in copied}
    for expected in (
        "emb_user_id/hashed/table_1",
        "wide_and_deep/wide_bias",
        "emb_publisher/table",
        "hidden_0/kernel",
        "emb_category/table_2",
        "emb_item_id/centroids",
        "wide_device_x_country/embeddings",
    ):
        assert expected in paths, expected
    for var in copied:
        if var.path.endswith("row_tier"):
            continue
        np.testing.assert_array_equal(
            var.numpy(), old[var.path].numpy(), err_msg=var.path
        )
        if var.trainable:
            new_slots, old_slots = (
                _slots(groups, var),
                _slots(prev_groups, old[var.path]),
            )
            for slot, value in new_slots.items():
                np.testing.assert_array_equal(value.numpy(), old_slots[slot].numpy())
    assert report["skipped"] == []


def test_promoted_value_starts_from_its_double_hashed_embedding(
    warmed, previous, world
):
    name, model, _, report = warmed
    prev, _ = previous
    spec = wdt.tiny_spec()
    row = artifacts.read_vocab(world[name], "user_id").index("u6")
    hashes = np.array([[preprocessing.hash_values(["u6"], 16, s)[0] for s in (0, 1)]])
    for where in ("deep_embeddings", "wide_tables"):
        old_layer = getattr(prev, where)["user_id"]
        hashed = old_layer.hashed.compact_lookup(
            old_layer.hashed.export_compact(), hashes
        )[0]
        np.testing.assert_array_equal(
            getattr(model, where)["user_id"].dictionary.numpy()[row], hashed
        )
    assert report["features"]["user_id"]["promoted_from_hash"] == 1
    # The model's output for an example of u6 is unchanged at the moment of promotion.
    raw = {
        "user_id": ["u6", "u1"],
        "item_id": ["i1", "i4"],
        "publisher": ["p1", "p2"],
        "category": ["k1", "k0"],
        "device": ["d1", "d2"],
        "country": ["c1", "c3"],
        "price": [5.0, 12.0],
        "position": [3.0, 1.0],
    }
    tensors = {k: tf.constant(v) for k, v in raw.items()}
    old_ids = preprocessing.FeatureTransform(spec, world["stats0"])(tensors)
    new_ids = preprocessing.FeatureTransform(spec, world[name])(tensors)
    key = transformed_name("user_id")
    assert (
        old_ids[key].numpy()[0, 0] == 3 and new_ids[key].numpy()[0, 0] == row
    )  # OOV -> own row
    np.testing.assert_allclose(
        np.asarray(model(new_ids)), np.asarray(prev(old_ids)), rtol=1e-6, atol=1e-6
    )


def test_mgqe_tiers_come_from_the_new_artifacts(warmed, previous, world):
    name, model, _, _ = warmed
    prev, _ = previous
    tiers = artifacts.read_tiers(world[name], "item_id")
    got = model.deep_embeddings["item_id"].row_tier.numpy()
    np.testing.assert_array_equal(got, np.append(tiers, 1))
    new_vocab = artifacts.read_vocab(world[name], "item_id")
    old_vocab = artifacts.read_vocab(world["stats0"], "item_id")
    old_tiers = prev.deep_embeddings["item_id"].row_tier.numpy()
    tier = {
        v: (old_tiers[old_vocab.index(v)], got[new_vocab.index(v)])
        for v in ("i2", "i3")
    }
    assert tier == {"i2": (0, 1), "i3": (1, 0)}


def test_task_run_warm_starts_and_trains_the_next_hour(world):
    out = str(world["root"] / "model1")
    meta = task.run(
        world["config"],
        world["logs"],
        world["stats1"],
        out,
        warm_start=world["prev"],
        hours=HOURS[1],
    )
    assert (
        meta["warm_start"] == world["prev"] and meta["steps"] == 13
    )  # ceil(2 * 200 / 32)
    users = meta["warm_start_report"]["features"]["user_id"]
    assert users == {
        "rows": 4,
        "kept": 3,
        "promoted_from_hash": 1,
        "fresh": 0,
        "rows_from": "remap",
    }
    assert os.path.isfile(os.path.join(out, task.MODEL_FILE))


def test_rows_come_from_the_remap_of_a_continuous_run_and_by_value_otherwise(
    warmed,
):
    name, _, _, report = warmed
    sources = {f: r["rows_from"] for f, r in report["features"].items()}
    # stats1 continued from the previous model's artifact (--previous): its remap
    # files are used; batch1 was built without one, so rows are matched by value.
    expected = "remap" if name == "stats1" else "values"
    assert sources and set(sources.values()) == {expected}, sources


def test_warm_start_follows_the_remap_file(world, tmp_path, previous):
    """A remap that says otherwise than the values is what warm start follows."""
    import json
    import shutil

    stats = str(tmp_path / "stats1")
    shutil.copytree(world["stats1"], stats)
    path = os.path.join(stats, "remap", "item_id.json")
    with open(path) as f:
        raw = json.load(f)
    assert len(raw["new_rows"]) >= 2
    raw["new_rows"][0], raw["new_rows"][1] = raw["new_rows"][1], raw["new_rows"][0]
    with open(path, "w") as f:
        json.dump(raw, f)
    model, _, report = _warm(world, stats)
    assert report["features"]["item_id"]["rows_from"] == "remap"
    prev, _ = previous
    new_w = model.deep_embeddings["item_id"].embeddings.numpy()
    old_w = prev.deep_embeddings["item_id"].embeddings.numpy()
    o0, o1 = raw["old_rows"][0], raw["old_rows"][1]
    np.testing.assert_array_equal(new_w[raw["new_rows"][0]], old_w[o0])
    np.testing.assert_array_equal(new_w[raw["new_rows"][1]], old_w[o1])
