"""trainer.data.examples.make_dataset slices whole batches in NumPy; the batches, their
order, dtypes and the element spec are those of ``from_tensor_slices(...).batch()``."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from trainer.data import examples as ex


def _reference(examples, label_key, batch_size, seed, epochs):
    n = len(examples[label_key])
    order = np.concatenate(
        [np.random.default_rng(seed + e).permutation(n) for e in range(epochs)]
    )
    feats = {k: v[order] for k, v in examples.items() if k != label_key}
    ds = tf.data.Dataset.from_tensor_slices((feats, examples[label_key][order]))
    return ds.batch(batch_size)


@pytest.mark.parametrize(
    "n, batch_size, epochs",
    [(10, 3, 2), (12, 4, 1), (5, 8, 3), (1000, 64, 2), (0, 4, 1)],
)
def test_batches_equal_the_row_by_row_pipeline(n, batch_size, epochs):
    rng = np.random.default_rng(n)
    examples = {
        "ids": rng.integers(0, 9, (n, 3)),
        "x": rng.normal(size=(n,)).astype("float32"),
        "y": rng.integers(0, 2, n).astype("float32"),
    }
    got = ex.make_dataset(examples, "y", batch_size, seed=1, epochs=epochs)
    ref = _reference(examples, "y", batch_size, 1, epochs)
    assert got.element_spec == ref.element_spec
    got_b, ref_b = list(got.as_numpy_iterator()), list(ref.as_numpy_iterator())
    assert len(got_b) == len(ref_b) == ex.num_batches(examples, "y", batch_size, epochs)
    for (gf, gl), (rf, rl) in zip(got_b, ref_b, strict=True):
        np.testing.assert_array_equal(gl, rl)
        for k in rf:
            assert gf[k].dtype == rf[k].dtype
            np.testing.assert_array_equal(gf[k], rf[k])
