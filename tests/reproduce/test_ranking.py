"""reproduce.ranking: the experiment YAMLs and a tiny end-to-end run of the CLI."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from reproduce import ranking as reproduce
from reproduce import run_store
from tests.trainer.models import planted_pairs
from trainer.config import load_config
from trainer.data.samples import RankingTask, prepare_task
from trainer.data.sequences import from_pairs
from trainer.evaluation import ranking
from trainer.models.factory import build_ranking_model
from trainer.models.gmf import GMF
from trainer.serving.tables import model_size

SPECS = pathlib.Path(__file__).resolve().parents[2] / "specs" / "experiments"
_NONE = np.zeros(0, np.int64)
#: ML-1M's sizes; building a model needs only the counts.
ML1M = RankingTask(
    6040, 3416, _NONE, np.zeros(6041, np.int64), _NONE, _NONE, _NONE, _NONE
)


@pytest.mark.parametrize("model", reproduce.MODELS)
@pytest.mark.parametrize("method", reproduce.METHODS)
def test_every_experiment_yaml_builds_its_model(model, method):
    cfg = load_config(reproduce.spec_path(str(SPECS), model, method))
    assert cfg.model.name == model and cfg.model.embedding.dim == 64
    assert cfg.model.embedding.kind == method.removesuffix("_compact")
    built = build_ranking_model(cfg.model, ML1M)
    percent = model_size(built, cfg.model.embedding).percent
    assert percent == 100.0 if method == "full" else percent < 85.0
    assert built.embedding_tables()  # every table is built from the config


def test_paper_settings_in_the_yamls():
    gmf = load_config(str(SPECS / "gmf_full.yaml"))
    assert (
        gmf.training.epochs,
        gmf.training.batch_size,
        gmf.training.num_negatives,
    ) == (20, 256, 4)
    neumf = load_config(str(SPECS / "neumf_full.yaml"))
    assert neumf.model.hidden_units == (64, 32, 16)
    sasrec = load_config(str(SPECS / "sasrec_full.yaml"))
    assert (sasrec.model.maxlen, sasrec.model.num_blocks, sasrec.model.dropout) == (
        50,
        2,
        0.2,
    )
    assert (
        sasrec.optimizer.beta_2,
        sasrec.training.batch_size,
        sasrec.training.epochs,
    ) == (0.98, 128, 200)
    assert load_config(str(SPECS / "gmf_mgqe.yaml")).model.embedding.num_centroids == (
        256,
        64,
    )


def test_compact_mgqe_is_at_most_21_percent_of_full_gmf_on_ml1m():
    emb = load_config(str(SPECS / "gmf_mgqe_compact.yaml")).model.embedding
    percent = model_size(GMF(6040, 3416, emb), emb).percent
    assert percent <= 21.0
    default = load_config(str(SPECS / "gmf_mgqe.yaml")).model.embedding
    assert model_size(GMF(6040, 3416, default), default).percent == pytest.approx(
        24.80, abs=0.01
    )


def test_cli_writes_results_and_plot(tmp_path, capsys):
    users, items = planted_pairs(num_users=40)
    (tmp_path / "ml-1m").mkdir()
    np.savetxt(tmp_path / "ml-1m" / "ml-1m.txt", np.stack([users, items], 1), fmt="%d")
    out = tmp_path / "docs" / "RESULTS.md"
    argv = [
        "--data-dir",
        str(tmp_path),
        "--out",
        str(out),
        "--models",
        "gmf",
        "--methods",
        "full,mgqe_compact",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--max-steps",
        "4",
        "--specs-dir",
        str(SPECS),
        "--results-dir",
        str(tmp_path / "store"),
    ]
    assert reproduce.main(argv) == 0
    text = out.read_text()
    assert (
        "| method | HR@10 | NDCG@10 | model size % | paper HR@10 | paper NDCG@10"
        in text
    )
    main_table = text.split("Other protocols")[0]  # the sampled ones follow it
    rows = [
        line
        for line in main_table.splitlines()
        if line.startswith("| full ") or line.startswith("| mgqe_compact ")
    ]
    assert len(rows) == 2 and all("±" in r for r in rows)
    assert "| 7.79 | 3.88 | 100.00 |" in rows[0]  # the paper's GMF full row
    assert "--seeds 2" in text and "gmf_mgqe_compact.yaml" in text
    png = tmp_path / "docs" / "RESULTS.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "gmf/full seed 1 epoch 1/2" in printed and "wrote" in printed


def test_cli_rejects_unknown_methods(tmp_path, capsys):
    assert reproduce.main(["--data-dir", str(tmp_path), "--methods", "full,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_cli_resumes_from_stored_runs_and_adds_seeds(tmp_path, capsys):
    users, items = planted_pairs(num_users=40)
    np.savetxt(tmp_path / "ml-1m.txt", np.stack([users, items], 1), fmt="%d")
    store = tmp_path / "store"
    common = ["--data-dir", str(tmp_path), "--out", str(tmp_path / "R.md")]
    common += ["--models", "gmf", "--methods", "full", "--epochs", "1"]
    common += ["--specs-dir", str(SPECS), "--results-dir", str(store)]
    assert reproduce.main([*common, "--max-steps", "3", "--seeds", "1"]) == 0
    trained = capsys.readouterr().out
    assert len(list(store.glob("gmf_full_seed0_*.json"))) == 1
    summary = next(x for x in trained.splitlines() if "best epoch" in x)

    assert reproduce.main([*common, "--max-steps", "3", "--seeds", "2"]) == 0
    printed = capsys.readouterr().out
    stored = summary.replace("seed 0:", "seed 0 (stored):").rsplit(",", 1)[0]
    assert stored in printed  # the same metrics and size, read back
    assert "gmf/full seed 1 epoch 1/1" in printed  # only the new seed trains
    assert "gmf/full seed 0 epoch" not in printed
    assert "| 2 |" in (tmp_path / "R.md").read_text()  # both seeds in the table

    # Another budget is another fingerprint: nothing stored is reused.
    assert reproduce.main([*common, "--max-steps", "2", "--seeds", "1"]) == 0
    assert "(stored)" not in capsys.readouterr().out
    assert len(list(store.glob("gmf_full_seed0_*.json"))) == 2


def test_stored_run_round_trips_and_corrupt_files_name_the_path(tmp_path):
    task = prepare_task(from_pairs(*planted_pairs(num_users=30)))
    small = {"training.epochs": 2, "training.max_steps": 4}
    small |= {"model.embedding.dim": 8, "model.embedding.num_subspaces": 4}
    cfg = load_config(str(SPECS / "gmf_mgqe.yaml"), small)
    result = ranking.train_and_evaluate(cfg, task)
    store = run_store.RunStore(str(tmp_path))
    path = store.save("gmf_mgqe", result, "full", 1, task)
    assert store.load("gmf_mgqe", cfg, "full", 1, task) == result  # every field
    assert store.load("gmf_mgqe", cfg, "sampled_ncf", 1, task) is None
    other_seed = load_config(
        str(SPECS / "gmf_mgqe.yaml"), {**small, "training.seed": 1}
    )
    assert store.load("gmf_mgqe", other_seed, "full", 1, task) is None
    pathlib.Path(path).write_text("{not json")
    with pytest.raises(ValueError, match="corrupt stored run") as e:
        store.load("gmf_mgqe", cfg, "full", 1, task)
    assert path in str(e.value)
    pathlib.Path(path).write_text('{"model": "gmf"}')
    with pytest.raises(ValueError, match="not a stored ranking run"):
        store.load("gmf_mgqe", cfg, "full", 1, task)
