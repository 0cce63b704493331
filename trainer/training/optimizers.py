"""THE optimizer factory (:func:`make_optimizer`) and its row-sparse optimizers.

Every config name means one thing everywhere (:data:`OPTIMIZERS`): ``adam`` is Adam
with Keras' dense semantics (the ranking reproductions, as their papers), ``lazy_adam``
the row-sparse Adam, ``sparse_adagrad`` and ``sparse_ftrl`` row-sparse Adagrad and FTRL
(wide-and-deep's large tables: FTRL on the wide part and Adagrad on the deep part, as
in Cheng et al. 2016, "Wide & Deep Learning for Recommender Systems"), ``sgd`` plain SGD. The default of
:class:`~trainer.config.OptimizerConfig` is ``lazy_adam`` and of the wide part
``sparse_ftrl``, so wide-and-deep's tables stay row-sparse unless a config says else.

Keras 3 optimizers on the TF backend update every row of an embedding table on every
step (Wide & Deep, Cheng et al. 2016, uses Adagrad and FTRL on tables of millions of rows): a full
read and write of the table and its slots per step. These optimizers are plain
``tf.Module`` objects for our own ``tf.function`` training step:

* a dense ``tf.Tensor`` gradient gets the usual dense update (numerically Keras');
* a ``tf.IndexedSlices`` gradient (from ``tf.gather`` / ``keras.ops.take``) gets a
  row-sparse update: duplicate ids are summed (``tf.unique`` +
  ``tf.math.unsorted_segment_sum``), the touched rows of the variable and its slots are
  gathered, updated, and written back with ``scatter_update``. Untouched rows and
  their slots stay bit-identical.

Variables may be ``tf.Variable`` or Keras 3 variables (``keras.Variable``; on the TF
backend its ``.value`` is the ``tf.Variable`` holding the data, with scatter ops).

Slots are ``tf.Variable`` objects created lazily on the first ``apply_gradients`` (under
``tf.init_scope``, so also on the first trace of a ``tf.function``) or eagerly by
``build(var_list)``. Under a ``tf.distribute`` strategy create the optimizer inside
``strategy.scope()`` (and preferably call ``build`` there); gradients passed to
``apply_gradients`` from inside ``strategy.run`` are summed across replicas (scale the
loss by the global batch size) and every replica's copy is updated through
``strategy.extended.update``.

Checkpointing: the optimizer is a trackable ``tf.Module``; ``tf.train.Checkpoint(
optimizer=opt)`` saves ``iterations`` and all slots, keyed by the variable's name (the
Keras ``path`` for Keras variables). Restoring into a fresh optimizer works before or
after its slots exist (slots created later pick up the restored values).

Warm start: ``slots(var)`` returns the slot variables of ``var`` by slot name, and
``slot_initial_values()`` the constant each slot starts from, so that code remapping the
rows of an embedding table can gather the same rows of every slot and fill new rows with
the initial value.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import tensorflow as tf

LearningRate = float | Callable[[tf.Tensor], Any]
GradAndVar = tuple[tf.Tensor | tf.IndexedSlices | None, Any]


def unwrap_variable(var: Any) -> tf.Variable:
    """Returns the ``tf.Variable`` behind ``var`` (a Keras variable's ``.value``).

    Args:
        var: A ``tf.Variable`` or a ``keras.Variable`` on the TensorFlow backend.

    Returns:
        The underlying ``tf.Variable`` (possibly a distributed variable).
    """
    if isinstance(var, keras.Variable):
        return var.value
    return var


def _variable_key(var: Any) -> str:
    """Checkpoint key of a variable: the Keras path, else the TF name without ``:0``."""
    if isinstance(var, keras.Variable):
        return str(var.path)
    name = str(var.name)
    return name[:-2] if name.endswith(":0") else name


def dedupe_indexed_slices(grad: tf.IndexedSlices) -> tuple[tf.Tensor, tf.Tensor]:
    """Sums the rows of ``grad`` that share an index.

    Args:
        grad: Row gradient with possibly repeated ``indices``.

    Returns:
        ``(unique_indices, summed_values)``, one value row per unique index.
    """
    unique_ids, positions = tf.unique(grad.indices)
    summed = tf.math.unsorted_segment_sum(
        grad.values, positions, tf.shape(unique_ids)[0]
    )
    return unique_ids, summed


class RowSparseOptimizer(tf.Module, abc.ABC):
    """Base class: dense and row-sparse application of one elementwise update rule.

    Subclasses define the slots (name -> constant initial value) and ``_update_rows``, a
    pure function from (variable rows, gradient rows, slot rows) to their new values.
    The dense path applies it to whole tensors; the sparse path to the gathered rows.

    Args:
        learning_rate: A float, or a callable taking ``iterations`` (e.g. a
            ``keras.optimizers.schedules.LearningRateSchedule``).
        name: Module name.

    A subclass with ``densify = True`` turns ``tf.IndexedSlices`` gradients into dense
    ones first: the dense semantics of the rule (``adam``), at the cost of a full-table
    update per step.
    """

    densify = False

    def __init__(self, learning_rate: LearningRate, name: str) -> None:
        super().__init__(name=name)
        if not callable(learning_rate) and learning_rate <= 0:
            raise ValueError(f"`learning_rate` must be > 0. Received: {learning_rate}")
        self.learning_rate = learning_rate
        with tf.init_scope():
            self._iterations = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="iterations",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self._slot_vars: dict[str, dict[str, tf.Variable]] = {}
        self._keys_by_ref: dict[Any, str] = {}

    @property
    def iterations(self) -> tf.Variable:
        """Number of ``apply_gradients`` calls so far (int64 ``tf.Variable``)."""
        return self._iterations

    @abc.abstractmethod
    def slot_initial_values(self) -> dict[str, float]:
        """Slot name -> the constant every element of that slot starts from."""

    @abc.abstractmethod
    def _update_rows(
        self, rows: tf.Tensor, grad: tf.Tensor, slots: dict[str, tf.Tensor]
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Returns the new (variable rows, slot rows) for the given gradient rows."""

    def build(self, var_list: Iterable[Any]) -> None:
        """Creates the slots of every variable in ``var_list`` now (idempotent).

        Args:
            var_list: ``tf.Variable`` or ``keras.Variable`` objects.

        Raises:
            ValueError: If two different variables share a name.
        """
        strategy = tf.distribute.get_strategy()
        for var in var_list:
            key = _variable_key(var)
            tf_var = unwrap_variable(var)
            if key in self._slot_vars:
                if self._keys_by_ref.get(tf_var.ref()) != key:
                    raise ValueError(f"Two variables share the name {key!r}.")
                continue
            with tf.init_scope(), strategy.extended.colocate_vars_with(tf_var):
                self._slot_vars[key] = {
                    slot: tf.Variable(
                        tf.fill(tf.shape(tf_var), tf.cast(value, tf_var.dtype)),
                        trainable=False,
                        name=f"{key.replace('/', '_')}_{slot}",
                    )
                    for slot, value in self.slot_initial_values().items()
                }
            self._keys_by_ref[tf_var.ref()] = key

    def slots(self, var: Any) -> dict[str, tf.Variable]:
        """The slot variables of ``var`` by slot name (for warm-start row remapping).

        Args:
            var: A variable passed to ``build`` or ``apply_gradients`` before (the Keras
                variable or its underlying ``tf.Variable``).

        Returns:
            A dict slot name -> ``tf.Variable`` of the variable's shape.

        Raises:
            KeyError: If the variable has no slots yet.
        """
        key = self._keys_by_ref.get(unwrap_variable(var).ref(), _variable_key(var))
        return dict(self._slot_vars[key])

    def apply_gradients(self, grads_and_vars: Iterable[GradAndVar]) -> None:
        """Applies one step: dense updates for tensors, row-sparse for IndexedSlices.

        ``None`` gradients are skipped. Increments ``iterations`` by one.

        Args:
            grads_and_vars: ``(gradient, variable)`` pairs.
        """
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        self.build([v for _, v in pairs])
        grads = [g for g, _ in pairs]
        tf_vars = [unwrap_variable(v) for _, v in pairs]
        slot_lists = [self._slot_vars[self._keys_by_ref[v.ref()]] for v in tf_vars]
        args = (grads, tf_vars, slot_lists)
        if tf.distribute.in_cross_replica_context():
            self._apply_cross_replica(tf.distribute.get_strategy(), *args)
            return
        context = tf.distribute.get_replica_context()
        if tf.distribute.has_strategy() and grads:  # sum over replicas, like Keras
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        context.merge_call(self._apply_cross_replica, args=(grads, *args[1:]))

    def _apply_cross_replica(
        self,
        strategy: tf.distribute.Strategy,
        grads: Sequence[tf.Tensor | tf.IndexedSlices],
        tf_vars: Sequence[tf.Variable],
        slot_lists: Sequence[dict[str, tf.Variable]],
    ) -> None:
        for grad, var, slots in zip(grads, tf_vars, slot_lists, strict=True):
            strategy.extended.update(
                var, self._apply_one, args=(grad, slots), group=False
            )
        strategy.extended.update(
            self._iterations, lambda it: it.assign_add(1), group=False
        )

    def _learning_rate(self, dtype: tf.DType) -> tf.Tensor:
        if callable(self.learning_rate):
            return tf.cast(self.learning_rate(self._iterations), dtype)
        return tf.constant(self.learning_rate, dtype)

    def _apply_one(
        self,
        var: tf.Variable,
        grad: tf.Tensor | tf.IndexedSlices,
        slots: dict[str, tf.Variable],
    ) -> None:
        if isinstance(grad, tf.IndexedSlices) and self.densify:
            grad = tf.convert_to_tensor(grad)
        if isinstance(grad, tf.IndexedSlices):
            ids, values = dedupe_indexed_slices(grad)
            values = tf.cast(values, var.dtype)
            rows = tf.gather(var, ids)
            slot_rows = {name: tf.gather(slot, ids) for name, slot in slots.items()}
            new_rows, new_slots = self._update_rows(rows, values, slot_rows)
            var.scatter_update(tf.IndexedSlices(new_rows, ids))
            for name, slot in slots.items():
                slot.scatter_update(tf.IndexedSlices(new_slots[name], ids))
            return
        grad = tf.cast(grad, var.dtype)
        values = {name: slot.read_value() for name, slot in slots.items()}
        new_var, new_slots = self._update_rows(var.read_value(), grad, values)
        var.assign(new_var)
        for name, slot in slots.items():
            slot.assign(new_slots[name])


class SparseAdagrad(RowSparseOptimizer):
    """Adagrad (Duchi et al. 2011) with row-sparse updates for ``tf.IndexedSlices``.

    ``acc += g²; var -= lr · g / sqrt(acc + epsilon)``, as ``keras.optimizers.Adagrad``.
    The deep part of Wide & Deep uses it with learning rate 0.05 (TF's Wide & Deep estimator default).

    Args:
        learning_rate: Step size (float or schedule of ``iterations``).
        initial_accumulator_value: Starting value of the ``accumulator`` slot.
        epsilon: Added to the accumulator under the square root.
        name: Module name.

    Example:
        >>> opt = SparseAdagrad(learning_rate=0.05)
        >>> table = tf.Variable(tf.zeros((1000, 8)))
        >>> with tf.GradientTape() as tape:
        ...     loss = tf.reduce_sum(tf.gather(table, [3, 3, 7]))
        >>> opt.apply_gradients([(tape.gradient(loss, table), table)])
    """

    def __init__(
        self,
        learning_rate: LearningRate = 0.05,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        name: str = "sparse_adagrad",
    ) -> None:
        super().__init__(learning_rate, name)
        if initial_accumulator_value < 0:
            raise ValueError(
                "`initial_accumulator_value` must be >= 0. "
                f"Received: {initial_accumulator_value}"
            )
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def slot_initial_values(self) -> dict[str, float]:
        """See base class: one ``accumulator`` slot."""
        return {"accumulator": self.initial_accumulator_value}

    def _update_rows(
        self, rows: tf.Tensor, grad: tf.Tensor, slots: dict[str, tf.Tensor]
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        acc = slots["accumulator"] + tf.square(grad)
        lr = self._learning_rate(rows.dtype)
        new_rows = rows - lr * grad / tf.sqrt(acc + self.epsilon)
        return new_rows, {"accumulator": acc}


class SparseSGD(RowSparseOptimizer):
    """Plain SGD (the hashing paper's optimizer) with row-sparse updates; no slots.

    Example:
        >>> opt = SparseSGD(learning_rate=0.001)
    """

    def __init__(
        self, learning_rate: LearningRate = 0.001, name: str = "sparse_sgd"
    ) -> None:
        super().__init__(learning_rate, name)

    def slot_initial_values(self) -> dict[str, float]:
        """See base class: no slots."""
        return {}

    def _update_rows(
        self, rows: tf.Tensor, grad: tf.Tensor, slots: dict[str, tf.Tensor]
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        return rows - self._learning_rate(rows.dtype) * grad, {}


class SparseFtrl(RowSparseOptimizer):
    """FTRL-Proximal (McMahan et al. 2013) with row-sparse updates.

    Per element, as ``tf.raw_ops.ResourceApplyFtrl`` and ``keras.optimizers.Ftrl``
    (p = ``learning_rate_power``)::

        n' = n + g²
        z += g - (n'^(-p) - n^(-p)) / lr · w
        w = (clip(z, -l1, l1) - z) / (n'^(-p) / lr + 2·l2)

    The wide part of Wide & Deep uses it with L1 (Cheng et al. 2016). Rows never touched
    keep their initial value here, whereas a dense update would set them to 0 (z = 0).

    Args:
        learning_rate: Step size (float or schedule of ``iterations``).
        learning_rate_power: p <= 0; -0.5 is the usual FTRL schedule.
        initial_accumulator_value: Starting value of the ``accumulator`` slot (n), > 0.
        l1_regularization_strength: L1 strength (>= 0); produces exact zeros.
        l2_regularization_strength: L2 strength (>= 0).
        name: Module name.

    Example:
        >>> opt = SparseFtrl(learning_rate=0.1, l1_regularization_strength=0.01)
        >>> table = tf.Variable(tf.zeros((1000, 1)))
        >>> with tf.GradientTape() as tape:
        ...     loss = tf.reduce_sum(tf.gather(table, [3, 7]))
        >>> opt.apply_gradients([(tape.gradient(loss, table), table)])
    """

    def __init__(
        self,
        learning_rate: LearningRate = 0.001,
        learning_rate_power: float = -0.5,
        initial_accumulator_value: float = 0.1,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        name: str = "sparse_ftrl",
    ) -> None:
        super().__init__(learning_rate, name)
        if learning_rate_power > 0:
            raise ValueError(
                f"`learning_rate_power` must be <= 0. Received: {learning_rate_power}"
            )
        if initial_accumulator_value <= 0:
            raise ValueError(
                "`initial_accumulator_value` must be > 0. "
                f"Received: {initial_accumulator_value}"
            )
        if l1_regularization_strength < 0 or l2_regularization_strength < 0:
            raise ValueError(
                "Regularization strengths must be >= 0. Received: "
                f"l1={l1_regularization_strength}, l2={l2_regularization_strength}"
            )
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength

    def slot_initial_values(self) -> dict[str, float]:
        """See base class: ``accumulator`` (n) and ``linear`` (z) slots."""
        return {"accumulator": self.initial_accumulator_value, "linear": 0.0}

    def _update_rows(
        self, rows: tf.Tensor, grad: tf.Tensor, slots: dict[str, tf.Tensor]
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        lr = self._learning_rate(rows.dtype)
        power = -self.learning_rate_power
        accum = slots["accumulator"]
        new_accum = accum + tf.square(grad)
        sigma = (tf.pow(new_accum, power) - tf.pow(accum, power)) / lr
        linear = slots["linear"] + grad - sigma * rows
        l2 = self.l2_regularization_strength
        quadratic = tf.pow(new_accum, power) / lr + 2.0 * l2
        l1 = self.l1_regularization_strength
        new_rows = (tf.clip_by_value(linear, -l1, l1) - linear) / quadratic
        return new_rows, {"accumulator": new_accum, "linear": linear}


class LazyAdam(RowSparseOptimizer):
    """Adam (Kingma & Ba 2015) whose moments change only for the rows in the gradient.

    Dense gradients get ``keras.optimizers.Adam``'s update. For ``tf.IndexedSlices`` the
    first and second moments of the touched rows are updated and the bias correction
    uses the global step, as in TensorFlow Addons' ``LazyAdam``; rows absent from a
    batch keep stale moments (so the result differs from dense Adam for rows that some
    steps skip).

    Args:
        learning_rate: Step size (float or schedule of ``iterations``).
        beta_1: Decay of the first moment ``m``.
        beta_2: Decay of the second moment ``v``.
        epsilon: Added to ``sqrt(v)``.
        name: Module name.

    Example:
        >>> opt = LazyAdam(learning_rate=1e-3)
        >>> table = tf.Variable(tf.zeros((1000, 8)))
        >>> with tf.GradientTape() as tape:
        ...     loss = tf.reduce_sum(tf.gather(table, [3, 7]))
        >>> opt.apply_gradients([(tape.gradient(loss, table), table)])
    """

    def __init__(
        self,
        learning_rate: LearningRate = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        name: str = "lazy_adam",
    ) -> None:
        super().__init__(learning_rate, name)
        for label, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"`{label}` must be in [0, 1). Received: {beta}")
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def slot_initial_values(self) -> dict[str, float]:
        """See base class: ``m`` (first moment) and ``v`` (second moment) slots."""
        return {"m": 0.0, "v": 0.0}

    def _update_rows(
        self, rows: tf.Tensor, grad: tf.Tensor, slots: dict[str, tf.Tensor]
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        step = tf.cast(self._iterations + 1, rows.dtype)
        beta_1 = tf.cast(self.beta_1, rows.dtype)
        beta_2 = tf.cast(self.beta_2, rows.dtype)
        alpha = (
            self._learning_rate(rows.dtype)
            * tf.sqrt(1 - tf.pow(beta_2, step))
            / (1 - tf.pow(beta_1, step))
        )
        m = slots["m"] + (grad - slots["m"]) * (1 - self.beta_1)
        v = slots["v"] + (tf.square(grad) - slots["v"]) * (1 - self.beta_2)
        new_rows = rows - (m * alpha) / (tf.sqrt(v) + self.epsilon)
        return new_rows, {"m": m, "v": v}


class Adam(LazyAdam):
    """Adam (Kingma & Ba 2015) with ``keras.optimizers.Adam``'s dense semantics.

    A ``tf.IndexedSlices`` gradient is densified first (rows of repeated ids summed),
    so every row's moments decay on every step (rows absent from the batch see a zero
    gradient): Keras' Adam on the dense gradient, bit for bit, which is what NCF's
    GMF/NeuMF (He et al. 2017, sec. 4.1) and SASRec (Kang & McAuley 2018, sec. IV-C)
    train with. (Keras 3's Adam given the ``IndexedSlices`` itself squares each
    repeated row before summing, so ``v`` differs for ids repeated within a batch; the
    ranking reproductions trained that way before this optimizer.) Use
    :class:`LazyAdam` for large tables.

    Example:
        >>> opt = Adam(learning_rate=1e-3)
    """

    densify = True

    def __init__(
        self,
        learning_rate: LearningRate = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        name: str = "adam",
    ) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, name)


#: Config name -> (class, what it means). Every name means one thing everywhere.
OPTIMIZERS: dict[str, tuple[type[RowSparseOptimizer], str]] = {
    "sgd": (SparseSGD, "plain SGD (a zero gradient leaves a row as it is)"),
    "adam": (Adam, "Adam, dense: every row's moments decay every step (Keras' Adam)"),
    "lazy_adam": (LazyAdam, "Adam whose moments change only for the rows in the batch"),
    "sparse_adagrad": (SparseAdagrad, "Adagrad, updating only the rows in the batch"),
    "sparse_ftrl": (SparseFtrl, "FTRL-Proximal; rows never in a batch keep their init"),
}


def make_optimizer(cfg: Any) -> RowSparseOptimizer:
    """THE optimizer factory: the optimizer named by ``cfg.name`` (:data:`OPTIMIZERS`).

    Args:
        cfg: A :class:`~trainer.config.OptimizerConfig` (``name``, ``learning_rate``,
            the Adam betas and epsilon, the accumulator start, FTRL's ``l1``/``l2``).

    Returns:
        The optimizer, to build inside the strategy scope of the model.

    Raises:
        ValueError: For a name not in :data:`OPTIMIZERS`.

    Example:
        >>> from trainer.config import OptimizerConfig
        >>> type(make_optimizer(OptimizerConfig(name="adam"))).__name__
        'Adam'
    """
    if cfg.name not in OPTIMIZERS:
        raise ValueError(
            f"optimizer.name: {cfg.name!r} is not one of {sorted(OPTIMIZERS)}"
        )
    lr = cfg.learning_rate
    if cfg.name in ("adam", "lazy_adam"):
        cls = OPTIMIZERS[cfg.name][0]
        return cls(lr, beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon)
    if cfg.name == "sparse_adagrad":
        return SparseAdagrad(
            lr, initial_accumulator_value=cfg.initial_accumulator_value
        )
    if cfg.name == "sparse_ftrl":
        return SparseFtrl(
            lr,
            initial_accumulator_value=cfg.initial_accumulator_value,
            l1_regularization_strength=cfg.l1,
            l2_regularization_strength=cfg.l2,
        )
    return SparseSGD(lr)
