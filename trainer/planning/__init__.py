"""Compression planner: per-feature treatments that fit a serving-size budget.

``python -m trainer.plan`` reads a stats artifact and a feature spec and writes a
feature spec with one treatment per categorical feature (full, hash, double hash,
hybrid, DPQ, MGQE), chosen to minimise the predicted collided traffic within the budget.

- :mod:`trainer.planning.cost`: predicted cost of a treatment from a count table.
- :mod:`trainer.planning.candidates`: the candidate treatments and their serving bits.
- :mod:`trainer.planning.solver`: the multiple-choice knapsack (exact or with its gap).
- :mod:`trainer.planning.planner`: reading stats and spec, the plan.
- :mod:`trainer.planning.output`: the planned spec, the table, comparing two plans.

Pure Python + NumPy/pyarrow: no TensorFlow, so the pipeline can call it.
"""
