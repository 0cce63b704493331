"""trainer.serving.ranking_export and the ranking scorer: raw ids in, trained scores out.

Models are built through the model factory and trained a few real Adam steps on planted
pairs whose raw ids are not the model rows (items ``10 i + 7``, users ``u + 1000``), so
a scorer that skipped the id maps would fail.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer.models import planted_pairs
from trainer.config import EmbeddingConfig, ModelConfig
from trainer.data.samples import prepare_task
from trainer.data.sequences import from_pairs
from trainer.layers.compact_embedding import CompactCodebookEmbedding
from trainer.layers.scalar_quantized_embedding import ScalarQuantizedEmbedding
from trainer.models import factory
from trainer.serving import checks, export, ranking_export, scoring, tables

EMBEDDINGS = {
    "mgqe": {"num_subspaces": 4, "num_centroids": (16, 4), "tier_shares": (0.2,)},
    "dpq": {"num_subspaces": 4, "num_centroids": (8,)},
    "sq": {"bits": 4},
    "hybrid": {"hash_buckets": 16},
    "full": {},
}


@pytest.fixture(scope="module")
def task():
    users, items = planted_pairs(num_users=40, num_items=40, per_user=6)
    return prepare_task(from_pairs(users + 1000, items * 10 + 7))


def _train(model, task, steps: int = 5, seed: int = 0):
    """A few real Adam steps of pointwise BCE (GMF/NeuMF) or next-item BCE (SASRec)."""
    rng = np.random.default_rng(seed)
    opt = keras.optimizers.Adam(0.05)
    users, items = task.train_pairs()
    for _ in range(steps):
        pick = rng.integers(0, len(users), 64)
        neg = rng.integers(0, task.num_items, 64)
        with tf.GradientTape() as tape:
            if hasattr(model, "num_users"):
                pos = model.score_items(users[pick], items[pick][:, None])
                bad = model.score_items(users[pick], neg[:, None])
            else:
                seq = ranking_export.RankingIds.from_task(task, model).histories
                pos = model.score_items(seq[users[pick]], items[pick][:, None] + 1)
                bad = model.score_items(seq[users[pick]], neg[:, None] + 1)
            loss = keras.ops.mean(keras.ops.softplus(-pos) + keras.ops.softplus(bad))
            loss += sum(model.losses) if model.losses else 0.0
        grads = tape.gradient(loss, model.trainable_variables)
        pairs = zip(grads, model.trainable_variables, strict=True)
        opt.apply_gradients([(g, v) for g, v in pairs if g is not None])
    return model


def _model(name: str, kind: str, task, **model_kw):
    keras.utils.set_random_seed(0)
    emb = EmbeddingConfig(kind=kind, dim=8, **EMBEDDINGS[kind])
    extra = {"maxlen": 6, "num_blocks": 1, "dropout": 0.0} if name == "sasrec" else {}
    if name == "neumf":
        extra["hidden_units"] = (8, 4)
    cfg = ModelConfig(name=name, embedding=emb, **extra, **model_kw)
    return _train(factory.build_ranking_model(cfg, task), task)


@pytest.mark.parametrize(
    "name,kind",
    [("gmf", "mgqe"), ("gmf", "sq"), ("neumf", "dpq"), ("neumf", "hybrid"),
     ("sasrec", "mgqe"), ("sasrec", "sq")],
)  # fmt: skip
def test_export_scores_raw_candidates_like_the_trained_model(
    task, name, kind, tmp_path
):
    model = _model(name, kind, task)
    ids = ranking_export.RankingIds.from_task(task, model)
    out = str(tmp_path / "export")
    meta = ranking_export.export_ranking_model(model, ids, out)
    assert meta["check"]["max_abs_logit_diff"] <= checks.TOLERANCE
    assert meta["check"]["unknown_ids_flagged"]
    assert scoring.read_export_metadata(out)["serving_bits"] == meta["serving_bits"]
    size = tables.model_size(model, model.embedding_config)
    assert meta["serving_bits"] == size.serving_bits
    assert meta["model_size_percent"] == size.percent

    # Explicit ragged candidate lists in the raw id space, one unknown id each.
    rows = [0, 5, task.num_users - 1]
    users = [int(task.user_ids[r]) for r in rows]
    cands = [task.item_ids[[0, 3, 9]].tolist(), [int(task.item_ids[-1])], [999_999]]
    got = scoring.load_ranking_scorer(out)(users, cands)
    assert [len(g) for g in got] == [3, 1, 1]
    assert np.isnan(got[2]).all()
    want = checks.reference_logits(
        model, ids, np.asarray(users[:2]), np.asarray([cands[0], cands[1] * 3])
    )
    np.testing.assert_allclose(got[0], want[0], atol=checks.TOLERANCE)
    np.testing.assert_allclose(got[1], want[1, :1], atol=checks.TOLERANCE)
    if kind in ("mgqe", "dpq", "sq"):
        assert meta["compact_layers"]  # the trained tables are not what is served
        assert meta["serving_bits"] < meta["full_embedding_bits"]


def test_serving_model_holds_codes_not_query_tables(task):
    model = _model("gmf", "mgqe", task)
    serving, info = ranking_export.build_ranking_serving_model(model)
    assert set(info.replaced) == {"user", "item"}
    assert all(
        isinstance(t, CompactCodebookEmbedding)
        for t in serving.embedding_tables().values()
    )
    shapes = {tuple(w.shape) for w in serving.weights}
    assert (task.num_items, 8) not in shapes and (task.num_users, 8) not in shapes
    size = tables.size_of(serving, serving.embedding_tables())
    assert (
        size.serving_bits
        == tables.model_size(model, model.embedding_config).serving_bits
    )


def test_one_sq_path_for_evaluation_and_export(task):
    """The table evaluated inside serving_tables is the table the export serves."""
    model = _model("gmf", "sq", task)
    before = keras.ops.convert_to_numpy(model.item_embedding.embeddings).copy()
    serving, info = ranking_export.build_ranking_serving_model(model)
    assert isinstance(serving.item_embedding, ScalarQuantizedEmbedding)
    served = keras.ops.convert_to_numpy(
        serving.item_embedding(np.arange(task.num_items))
    )
    with tables.serving_tables(model, model.embedding_config):
        evaluated = keras.ops.convert_to_numpy(model.item_embedding.embeddings)
        assert max(len(np.unique(evaluated[:, j])) for j in range(8)) <= 2**4
    np.testing.assert_array_equal(evaluated, info.sq_tables["item"])
    np.testing.assert_allclose(served, evaluated, atol=1e-6)
    np.testing.assert_array_equal(  # restored after the block
        keras.ops.convert_to_numpy(model.item_embedding.embeddings), before
    )


def test_check_fails_on_a_wrong_export(task, tmp_path):
    model = _model("gmf", "full", task)
    ids = ranking_export.RankingIds.from_task(task, model)
    out = str(tmp_path / "export")
    ranking_export.export_ranking_model(model, ids, out)
    model.item_embedding.embeddings.assign(model.item_embedding.embeddings + 0.1)
    with pytest.raises(checks.ExportCheckError, match="differ"):
        checks.verify_ranking(out, model, ids)
    with pytest.raises(FileExistsError):
        ranking_export.export_ranking_model(model, ids, out)
    short = ranking_export.RankingIds(ids.user_ids[:-1], ids.item_ids)
    with pytest.raises(ValueError, match="user ids"):
        ranking_export.export_ranking_model(model, short, str(tmp_path / "x"))


def _model_dir(tmp_path, model, task) -> str:
    """A trainer.task-shaped ranking model directory: model.keras, metadata, ids."""
    d = tmp_path / "model"
    d.mkdir()
    model.save(str(d / export.MODEL_FILE))
    ids = ranking_export.RankingIds.from_task(task, model)
    arrays = {"user_ids": ids.user_ids, "item_ids": ids.item_ids}
    if ids.histories is not None:
        arrays["histories"] = ids.histories
    np.savez(d / "ids.npz", **arrays)
    (d / "metadata.json").write_text(json.dumps({"ids": "ids.npz"}))
    return str(d)


def test_export_and_scoring_clis_on_a_ranking_model_dir(task, tmp_path, capsys):
    model = _model("sasrec", "mgqe", task)
    model_dir = _model_dir(tmp_path, model, task)
    out = str(tmp_path / "export")
    assert export.main(["--model", model_dir, "--out", out]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["check"]["max_abs_logit_diff"] <= checks.TOLERANCE
    assert export.main(["--model", model_dir, "--out", out, "--sq-bits", "8"]) == 2
    assert capsys.readouterr().err.startswith("error: ")

    user = int(task.user_ids[2])
    items = task.item_ids[[1, 2, 4]].tolist()
    cands = tmp_path / "cands.tsv"
    cands.write_text(f"{user}\t{' '.join(map(str, items))}\n\n424242\t{items[0]}\n")
    scores = tmp_path / "scores.tsv"
    argv = ["--export", out, "--candidates", str(cands), "--out", str(scores)]
    assert scoring.main(argv) == 0
    lines = [line.split("\t") for line in scores.read_text().splitlines()]
    assert [(int(u), int(i)) for u, i, _ in lines] == [(user, i) for i in items] + [
        (424242, items[0])
    ]
    assert lines[-1][2] == "nan"
    reloaded = keras.saving.load_model(os.path.join(model_dir, export.MODEL_FILE))
    ids = ranking_export.RankingIds.from_task(task, reloaded)
    want = checks.reference_logits(
        reloaded, ids, np.asarray([user]), np.asarray([items])
    )[0]
    np.testing.assert_allclose(
        [float(s) for _, _, s in lines[:3]], want, rtol=1e-6, atol=checks.TOLERANCE
    )
    capsys.readouterr()

    cands.write_text(f"{user} {items[0]}\n")  # a space, not a TAB
    assert scoring.main(["--export", out, "--candidates", str(cands)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 1" in err and len(err.splitlines()) == 1
    assert scoring.main(["--export", str(tmp_path), "--candidates", str(cands)]) == 2
