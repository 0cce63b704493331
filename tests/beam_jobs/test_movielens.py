"""MovieLens events against independent counts on the real files, CLI, prepare."""

from __future__ import annotations

import collections
import gzip
import json
import os
import zipfile

import numpy as np
import pytest

from beam_jobs import movielens
from tests.fixtures.gcs import gcs_bucket, gcs_server  # noqa: F401  (fixtures)
from trainer.contracts import events, storage
from trainer.contracts.features import load_feature_spec
from trainer.data import sequences as ranking_data

PARTIAL = "ratings.users-1-2999.partial.dat.gz"


@pytest.fixture(scope="module")
def spec(repo_root):
    return load_feature_spec(str(repo_root / "specs" / "features" / "movielens.yaml"))


@pytest.fixture(scope="module")
def ml_dir(shared_data):
    return str(shared_data / "ml-1m")


@pytest.fixture(scope="module")
def raw_ratings(ml_dir) -> list[tuple[int, int, int, int]]:
    """The partial ratings parsed independently with plain Python."""
    with gzip.open(os.path.join(ml_dir, PARTIAL), "rt", encoding="latin-1") as f:
        return [tuple(int(x) for x in line.split("::")) for line in f]


@pytest.fixture(scope="module")
def real_events(ml_dir, spec):
    return movielens.build_events(ml_dir, spec)


def test_event_count_and_label_mean_match_independent_count(real_events, raw_ratings):
    table, dead = real_events
    assert len(raw_ratings) == 487_650
    assert table.num_rows == 487_650 - len(dead)
    assert dead == []  # the shared files are clean
    expected_mean = sum(r[2] >= 4 for r in raw_ratings) / len(raw_ratings)
    assert table["label"].to_numpy().mean() == pytest.approx(expected_mean, abs=1e-12)
    assert len(set(table["user_id"].to_pylist())) == len({r[0] for r in raw_ratings})
    assert len(set(table["movie_id"].to_pylist())) == len({r[1] for r in raw_ratings})
    assert table["event_ts"].to_pylist() == [r[3] for r in raw_ratings]  # file order


def test_one_users_events(real_events, raw_ratings):
    table, _ = real_events
    rows = [r for r in table.to_pylist() if r["user_id"] == "10"]
    mine = [r for r in raw_ratings if r[0] == 10]
    assert [(int(r["movie_id"]), r["event_ts"]) for r in rows] == [
        (m, t) for _, m, _, t in mine
    ]
    assert [r["label"] for r in rows] == [float(rt >= 4) for _, _, rt, _ in mine]
    # users.dat: 10::F::35::1::95370
    assert {(r["gender"], r["age"], r["occupation"], r["zip"]) for r in rows} == {
        ("F", "35", "1", "95370")
    }
    toy_story = [
        r for r in rows if r["movie_id"] == "1"
    ]  # 1::Toy Story (1995)::Animation|..
    assert [(r["genre"], r["year"]) for r in toy_story] == [("Animation", 1995.0)]


def test_movies_are_latin1_and_complete(ml_dir):
    movies, dead = movielens.read_movies(os.path.join(ml_dir, "movies.dat"))
    assert movies.num_rows == 3883 and dead == []
    by_id = {r["movie_id"]: r for r in movies.to_pylist()}
    assert by_id[73]["genre"] == "Drama" and by_id[73]["year"] == 1995.0  # Misérables
    users, dead = movielens.read_users(os.path.join(ml_dir, "users.dat"))
    assert users.num_rows == 6040 and dead == []


# ---------------------------------------------------------------- malformed input


def _write_data_dir(path, ratings: str, gz_ratings: str | None = None) -> str:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "users.dat"), "w") as f:
        f.write("1::F::1::10::48067\n2::M::56::16::70072\n2::M::1::1::1\nx::M\n")
    with open(os.path.join(path, "movies.dat"), "wb") as f:
        f.write(
            "7::Misérables, Les (1995)::Drama|Musical\n8::No Year::\n".encode("latin-1")
        )
    with open(os.path.join(path, "ratings.dat"), "w") as f:
        f.write(ratings)
    if gz_ratings is not None:
        with gzip.open(os.path.join(path, PARTIAL), "wt") as f:
            f.write(gz_ratings)
    return str(path)


RATINGS = (
    "1::7::5::978300760\n"  # 1 ok
    "1::7::5\n"  # 2 field count
    "1::seven::5::978300760\n"  # 3 not an int
    "1::8::6::978300760\n"  # 4 rating 6
    "9::7::4::978300760\n"  # 5 unknown user
    "2::99::4::978300760\n"  # 6 unknown movie
    "2::8::3::631152000\n"  # 7 1990: outside the contract
    "\n"  # 8 blank
    "2::8::1::978304000\n"  # 9 ok
)


def test_malformed_lines_become_dead_letters(tmp_path, spec):
    data = _write_data_dir(tmp_path / "d", RATINGS, gz_ratings="1::7::1::978300760\n")
    table, dead = movielens.build_events(data, spec)
    ratings = os.path.join(data, "ratings.dat")  # the full file wins over the partial
    got = {(os.path.basename(d.source), d.line): d.reason for d in dead}
    assert got == {
        ("users.dat", 3): "duplicate UserID: '2'",
        ("users.dat", 4): "expected 5 fields, got 2",
        ("ratings.dat", 2): "expected 4 fields, got 3",
        ("ratings.dat", 3): "movie_id: not an integer: 'seven'",
        ("ratings.dat", 4): "rating: not in 1..5: '6'",
        ("ratings.dat", 5): "unknown user_id: '9'",
        ("ratings.dat", 6): "unknown movie_id: '99'",
        ("ratings.dat", 7): "event_ts outside [2000, 2100)",
    }
    assert [d.record for d in dead if d.source == ratings][:2] == [
        "1::7::5",
        "1::seven::5::978300760",
    ]
    assert table.to_pylist() == [
        {
            "event_ts": 978300760,
            "label": 1.0,
            "user_id": "1",
            "movie_id": "7",
            "gender": "F",
            "age": "1",
            "occupation": "10",
            "zip": "48067",
            "genre": "Drama",
            "year": 1995.0,
        },
        {
            "event_ts": 978304000,
            "label": 0.0,
            "user_id": "2",
            "movie_id": "8",
            "gender": "M",
            "age": "56",
            "occupation": "16",
            "zip": "70072",
            "genre": None,
            "year": None,
        },
    ]


# ---------------------------------------------------------------------------- CLI


def test_cli_end_to_end_first_users(ml_dir, raw_ratings, tmp_path, capsys, spec):
    out = str(tmp_path / "events")
    assert (
        movielens.main(["--data-dir", ml_dir, "--out", out, "--max-users", "10"]) == 0
    )
    mine = [r for r in raw_ratings if r[0] <= 10]
    per_hour = collections.Counter(r[3] // 3600 for r in mine)
    hours = events.list_partitions(out)
    assert [int(h.timestamp()) // 3600 for h in hours] == sorted(per_hour)
    total, positives = 0, 0
    for hour in hours:
        table, dead = events.read_partition(out, hour, spec)
        assert not dead and table.num_rows == per_hour[int(hour.timestamp()) // 3600]
        assert table["event_ts"].to_pylist() == sorted(table["event_ts"].to_pylist())
        total += table.num_rows
        positives += int(table["label"].to_numpy().sum())
    assert (total, positives) == (len(mine), sum(r[2] >= 4 for r in mine))
    assert storage.read_text(os.path.join(out, "_dead_letter", "movielens.jsonl")) == ""
    printed = capsys.readouterr().out
    assert f"per-hour summary of {out} ({len(hours)} hours)" in printed
    assert f"total: {len(mine)} events in {len(hours)} hours" in printed
    assert f"... {len(hours) - 8} more hours ..." in printed
    first = events.format_hour(hours[0])
    assert f"{first}  events={per_hour[min(per_hour)]:<7}" in printed


def test_run_writes_to_gcs(request, ml_dir, raw_ratings, spec):
    root = request.getfixturevalue("gcs_bucket") + "/ml"
    counts, dead, dead_uri = movielens.run(ml_dir, root, spec, max_users=2)
    mine = [r for r in raw_ratings if r[0] <= 2]
    assert sum(c[0] for c in counts.values()) == len(mine) and dead == []
    assert storage.exists(dead_uri) and storage.read_text(dead_uri) == ""
    hours = events.list_partitions(root)
    assert hours == sorted(counts)
    table, _ = events.read_partition(root, hours[0], spec)
    assert table.num_rows == counts[hours[0]][0]


def test_cli_reports_dead_letters(tmp_path, capsys):
    data = _write_data_dir(tmp_path / "d", RATINGS)
    out = str(tmp_path / "o")
    assert movielens.main(["--data-dir", data, "--out", out, "--format", "jsonl"]) == 0
    printed = capsys.readouterr().out
    assert "total: 2 events in 2 hours" in printed and "8 dead letters" in printed
    lines = storage.read_text(
        os.path.join(out, "_dead_letter", "movielens.jsonl")
    ).splitlines()
    assert sorted(json.loads(s)["line"] for s in lines) == [2, 3, 3, 4, 4, 5, 6, 7]


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing_dir", "does not exist"),
        ("no_users", "has no users.dat"),
        ("no_ratings", "no ratings file"),
        ("out_not_empty", "is not empty"),
        ("max_users", "--max-users must be >= 1"),
    ],
)
def test_cli_bad_arguments(tmp_path, capsys, case, message):
    data = _write_data_dir(tmp_path / "d", RATINGS)
    out = tmp_path / "out"
    extra = []
    if case == "missing_dir":
        data = str(tmp_path / "nope")
    elif case == "no_users":
        os.remove(os.path.join(data, "users.dat"))
    elif case == "no_ratings":
        os.remove(os.path.join(data, "ratings.dat"))
    elif case == "out_not_empty":
        out.mkdir()
        (out / "x").write_text("x")
    else:
        extra = ["--max-users", "0"]
    assert movielens.main(["--data-dir", data, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_cli_requires_out(capsys):
    with pytest.raises(SystemExit) as e:
        movielens.main(["--data-dir", "/tmp"])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err


# ------------------------------------------------------------------------- prepare


def test_prepare_from_zip(tmp_path):
    ratings = (
        "1::10::5::300\n1::20::3::100\n1::30::4::200\n"  # user 1: 20, 30, 10
        "2::30::1::50\n2::10::2::50\n2::40::2::10\n"  # user 2: 40; tie 30, 10
    )
    zpath = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("ml-1m/ratings.dat", ratings)
        z.writestr("ml-1m/users.dat", "1::F::1::10::1\n2::M::1::10::2\n")
        z.writestr("ml-1m/movies.dat", "10::A (1990)::Drama\n")
        z.writestr("ml-1m/README", "terms")
    out = tmp_path / "data"
    assert (
        movielens.main(
            ["prepare", "--zip", str(zpath), "--out", str(out), "--min-count", "1"]
        )
        == 0
    )
    assert (out / "ratings.dat").read_text() == ratings
    assert (out / "GROUPLENS_ml-1m_README.txt").read_text() == "terms"
    # items numbered by first appearance: 20->1, 30->2, 10->3, 40->4
    assert (out / "ml-1m.txt").read_text() == "1 1\n1 2\n1 3\n2 4\n2 2\n2 3\n"
    assert (out / "sasrec_item_map.tsv").read_text().splitlines()[1:] == [
        "1\t20",
        "2\t30",
        "3\t10",
        "4\t40",
    ]
    data = ranking_data.load_sasrec(str(out / "ml-1m.txt"))
    assert (data.num_users, data.num_items, data.num_actions) == (2, 4, 6)
    # min_count=2 drops items 20 and 40 (one rating each)
    movielens.prepare(str(zpath), str(out), min_count=2)
    assert (out / "ml-1m.txt").read_text() == "1 1\n1 2\n2 1\n2 2\n"


def test_prepare_bad_zip(tmp_path, capsys):
    zpath = tmp_path / "x.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("ml-1m/users.dat", "")
    with pytest.raises(ValueError, match="no movies.dat, ratings.dat inside"):
        movielens.prepare(str(zpath), str(tmp_path / "o"))
    assert (
        movielens.main(["prepare", "--zip", str(tmp_path / "no.zip"), "--out", "o"])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_sasrec_order_matches_published_file(ml_dir, raw_ratings):
    """Time order with stable ties reproduces SASRec's ml-1m.txt for users 1-2999."""
    table = movielens.read_ratings(os.path.join(ml_dir, PARTIAL))[0]
    users, items, user_map, item_map = movielens.sasrec_sequences(table, min_count=1)
    pub = np.loadtxt(os.path.join(ml_dir, "ml-1m.txt"), dtype=np.int64)
    pub_users = _tsv_map(os.path.join(ml_dir, "sasrec_user_map.tsv"))
    pub_items = _tsv_map(os.path.join(ml_dir, "sasrec_item_map.tsv"))
    kept = set(pub_items.values())
    published = collections.defaultdict(list)
    for u, i in pub:
        if pub_users[u] <= 2999:
            published[pub_users[u]].append(pub_items[i])
    ours = collections.defaultdict(list)
    for u, i in zip(user_map[users - 1], item_map[items - 1], strict=True):
        if i in kept:
            ours[int(u)].append(int(i))
    assert len(ours) == 2999
    assert ours == published


def _tsv_map(path: str) -> dict[int, int]:
    with open(path) as f:
        next(f)
        return dict(tuple(int(x) for x in line.split("\t")) for line in f)
