"""The Gauss-Newton matrix and the Fisher matrices, as operators over a probe set.

For a model f(x; θ) with outputs f_n = f(x_n; θ) and the mean loss
L(θ) = (1/N) Σ_n ℓ(y_n, f_n) (+ R(θ), the regularization losses), the Hessian
splits into a part through the outputs' Jacobians J_n = ∂f_n/∂θ and a part
through their curvature:

    ∇²L = (1/N) Σ_n J_nᵀ ∇²_f ℓ_n J_n  +  (1/N) Σ_n Σ_k ∂ℓ_n/∂f_nk ∇²f_nk  +  ∇²R.

The operators here keep the first part, or replace ∇²_f ℓ_n by an outer
product of gradients (Schraudolph 2002; Martens 2020, "New insights and
perspectives on the natural gradient method", §5-§9; Kunstner et al. 2019,
"Limitations of the empirical Fisher approximation", eqs. 1-3):

* **GGN** (`GGNOperator`): G = (1/N) Σ_n J_nᵀ ∇²_f ℓ_n J_n, positive
  semi-definite for a convex loss (every Keras loss but the hinges' kinks).
* **Empirical Fisher** (`EmpiricalFisherOperator`):
  F_emp = (1/N) Σ_n ∇_θ ℓ_n ∇_θ ℓ_nᵀ, from the per-example gradients at the
  true labels (an example's loss: its part of the batch's mean loss times
  the batch size, masks included).
* **Fisher** (`FisherOperator`): F = (1/N) Σ_n J_nᵀ E_ŷ[∇_f ℓ(ŷ, f_n) ∇_f ℓ(ŷ, f_n)ᵀ] J_n
  with ŷ drawn from the model's predictive distribution, estimated with
  ``samples`` draws (Monte Carlo). For losses that are negative
  log-likelihoods in the outputs' natural parameters (softmax and sigmoid
  cross-entropy from logits, squared error) E_ŷ[∇ℓ ∇ℓᵀ] = ∇²_f ℓ, so F = G
  (Martens 2020, §9.2), which the tests check.

Every one is on the scale of the Hessian of the mean loss, adds the
Hessian of the regularization losses ∇²R (exact; 2λI for an L2 penalty), and
is a `HessianOperator` otherwise: the same probe set, blocks (`variables=`,
`block`), preconditioning (P^{-1/2} A P^{-1/2}), Lanczos, trace and density.

One product costs one forward pass with forward-mode differentiation (J v,
`tf.autodiff.ForwardAccumulator`) and one backward pass (Jᵀu), against about
two backward passes for H v; the product in output space u = M (J v) is
cheap: for the GGN a Hessian-vector product of the loss in the outputs, for
the Fishers u_k = w_k g_k (g_kᵀ (J v)_k) summed over the loss's terms k
(examples for the empirical Fisher; positions or elements for the Fisher),
with g_k their output gradients.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from analysis_tools._probe import ReplicaProgram
from analysis_tools._second_order import ExactResizeGradients, explained
from analysis_tools._tensors import check_count
from analysis_tools.curvature.hessian import HessianOperator

__all__ = ["CURVATURES", "EmpiricalFisherOperator", "FisherOperator", "GGNOperator", "curvature_operator"]

_ZERO = tf.UnconnectedGradients.ZERO


@contextlib.contextmanager
def _quiet_tensorflow_log():
    """TensorFlow's Python log at ERROR within the block (a tracing-time switch), restored after."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


class _OutputCurvature(HessianOperator):
    """v ↦ Jᵀ M J v + ∇²R v: the curvatures that pass through the model's outputs (see the module docstring).

    Takes `HessianOperator`'s arguments but ``differentiation`` (the
    product is always forward mode for J v and reverse mode for Jᵀu).
    """

    def __init__(
        self,
        model,
        data,
        loss=None,
        batch_size=None,
        mode="train",
        dropout=True,
        include_regularization=True,
        jit_compile=True,
        strategy=None,
        variables=None,
    ):
        super().__init__(
            model,
            data,
            loss=loss,
            batch_size=batch_size,
            mode=mode,
            dropout=dropout,
            include_regularization=include_regularization,
            jit_compile=jit_compile,
            strategy=strategy,
            variables=variables,
        )
        self.differentiation = None

    def _share_product(self, trainable, non_trainable, vector, x, y, mask, first):
        tangents = self._unflatten(vector)
        block = [trainable[i] for i in self._block]
        with tf.autodiff.ForwardAccumulator(block, tangents) as accumulator:
            with tf.GradientTape() as outer:
                outer.watch(block)
                with tf.GradientTape() as inner:
                    inner.watch(block)
                    y_pred, regularization = self._loss.outputs(trainable, non_trainable, x)
                if self._loss.include_regularization:
                    regularization_gradient = [
                        tf.convert_to_tensor(g)
                        for g in inner.gradient(regularization, block, unconnected_gradients=_ZERO)
                    ]
        if not isinstance(y_pred, tf.Tensor) and tf.nest.is_nested(y_pred):
            raise ValueError(f"{type(self).__name__} needs a model with one output tensor.")
        jv = accumulator.jvp(y_pred, unconnected_gradients=_ZERO)
        u = self._output_product(y, y_pred, jv, mask)
        parts = outer.gradient(y_pred, block, output_gradients=tf.cast(u, y_pred.dtype), unconnected_gradients=_ZERO)
        parts = [tf.cast(tf.convert_to_tensor(p), self.dtype) for p in parts]
        if self._loss.include_regularization:
            regularization_weight = tf.cast(first, self.dtype) / float(self.probe.num_replicas)
            hessian_r = accumulator.jvp(regularization_gradient, unconnected_gradients=_ZERO)
            parts = [p + regularization_weight * tf.cast(h, self.dtype) for p, h in zip(parts, hessian_r)]
        return self._flatten(parts, self.dtype)

    # ------------------------------------------------------ per-example diagonal
    def per_example_diagonal(self):
        """Σ_n c_n (J_nᵀ g_n)² from per-example gradients (see `EmpiricalFisherOperator`, `FisherOperator`).

        One Jacobian of the examples' output-gradient products per batch
        (`tf.GradientTape.jacobian`, vectorized): the cost of about n_b
        gradients and n_b × (parameters) of memory per replica.

        Returns:
            [rows, n] float64, flat in the operator's order of variables: one
            row for the empirical Fisher (its diagonal, exact), one row per
            draw for the Fisher (each an unbiased estimate).

        Raises:
            ValueError: If the regularization losses are included and the model
                has any (their Hessian's diagonal is not computed here).
        """
        if self._loss.include_regularization and self.model.losses:
            raise ValueError(
                "The per-example diagonal leaves out the regularization losses' Hessian: build the "
                "operator with include_regularization=False, or use curvature_diagonal's Hutchinson."
            )
        if getattr(self, "_diagonal_function", None) is None:
            self._replica_diagonal_function = ReplicaProgram(
                self._replica_diagonal, self.jit_compile, f"the per-example diagonal of {self._purpose}"
            )
            self._diagonal_function = tf.function(
                lambda trainable, non_trainable: self.probe.sum(
                    self._replica_diagonal_function,
                    (tf.zeros([self._diagonal_rows, self.dimension], tf.float64),),
                    trainable,
                    non_trainable,
                )[0]
            )
        trainable, non_trainable = self._current_values()
        with explained(f"the per-example diagonal of {self._purpose}"):
            return self._diagonal_function(trainable, non_trainable)

    def _replica_diagonal(self, trainable, non_trainable, x, y, mask, first):
        block = [trainable[i] for i in self._block]
        with ExactResizeGradients(), tf.GradientTape(persistent=True) as tape:
            tape.watch(block)
            y_pred, _ = self._loss.outputs(trainable, non_trainable, x)
            pairs = [(tf.stop_gradient(g), factor) for g, factor in self._example_gradients(y, y_pred, mask)]
            axes = list(range(1, len(y_pred.shape)))
            products = [tf.reduce_sum(tf.cast(y_pred, self.dtype) * g, axis=axes) for g, _ in pairs]
        totals = []
        for product, (_, factor) in zip(products, pairs):
            with _quiet_tensorflow_log():  # vectorizing an embedding's gather warns at every trace
                rows = tape.jacobian(product, block, unconnected_gradients=_ZERO, experimental_use_pfor=True)
            flat = tf.concat([tf.reshape(tf.cast(r, self.dtype), [product.shape[0], -1]) for r in rows], 1)
            totals.append(tf.cast(factor, self.dtype) * tf.reduce_sum(tf.square(flat), axis=0))
        return (tf.stack(totals),)

    _diagonal_rows = 1

    def _example_gradients(self, y, y_pred, mask):
        """[(g, c)], one per row: output gradients g and factors c with diagonal Σ_n c (J_nᵀ g_n)²."""
        raise ValueError(f"{type(self).__name__} has no per-example diagonal; use curvature_diagonal's Hutchinson.")

    def _loss_gradient(self, y, y_pred, mask):
        """∂S/∂f for this share S = Σ_n mask_n ℓ_n / N, at the outputs f = `y_pred`."""
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            share = self._loss.weighted_loss(y, y_pred, mask, self.probe.scale)
        return tf.cast(tape.gradient(share, y_pred, unconnected_gradients=_ZERO), self.dtype)

    def _output_product(self, y, y_pred, jv, mask):
        raise NotImplementedError


class GGNOperator(_OutputCurvature):
    """v ↦ G v, the generalized Gauss-Newton matrix G = (1/N) Σ_n J_nᵀ ∇²_f ℓ_n J_n (+ ∇²R).

    See the module docstring. ∇²_f ℓ is autodiff's Hessian of the loss in the
    outputs: any Keras loss (or callable) works; for a loss that is linear
    in the outputs piece by piece (hinge, absolute error) it is 0.
    """

    curvature = "ggn"
    _purpose = "its Gauss-Newton matrix"
    _product_name = "a Gauss-Newton-vector product"

    def _output_product(self, y, y_pred, jv, mask):
        with tf.autodiff.ForwardAccumulator(y_pred, tf.cast(jv, y_pred.dtype)) as accumulator:
            gradient = self._loss_gradient(y, y_pred, mask)
        return accumulator.jvp(gradient, unconnected_gradients=_ZERO)


class EmpiricalFisherOperator(_OutputCurvature):
    """v ↦ F_emp v, the empirical Fisher (1/N) Σ_n ∇_θ ℓ_n ∇_θ ℓ_nᵀ (+ ∇²R), from per-example gradients.

    With S = (n_b/N) · (mean loss of a batch of n_b), ∇_θ ℓ_n = N J_nᵀ ∂S/∂f_n,
    so F_emp v = Σ_n N J_nᵀ g_n (g_nᵀ J_n v) with g_n = ∂S/∂f_n: one
    forward-mode and one reverse pass, no per-example loop. An example's loss
    ℓ_n is its part of the batch's mean loss times n_b (its own loss without
    masks; with BatchNorm in training mode it still depends on the whole
    batch). See Kunstner et al. (2019) for why F_emp is not the Fisher.
    """

    curvature = "empirical_fisher"
    _purpose = "its empirical Fisher"
    _product_name = "an empirical-Fisher-vector product"

    def _output_product(self, y, y_pred, jv, mask):
        g = self._loss_gradient(y, y_pred, mask)
        per_example = tf.reduce_sum(g * tf.cast(jv, self.dtype), axis=tf.range(1, tf.rank(g)), keepdims=True)
        return float(self.probe.num_examples) * g * per_example

    def _example_gradients(self, y, y_pred, mask):
        # ∇_θ ℓ_n = N J_nᵀ g_n: diag F_emp = (1/N) Σ_n (∇ℓ_n)² = N Σ_n (J_nᵀ g_n)², exact.
        return [(self._loss_gradient(y, y_pred, mask), float(self.probe.num_examples))]


# The predictive distributions of the losses that are negative log-likelihoods: Keras's class and function
# names, and how the model's outputs parametrize the distribution.
_LIKELIHOODS = {
    "SparseCategoricalCrossentropy": "categorical",
    "sparse_categorical_crossentropy": "categorical",
    "CategoricalCrossentropy": "categorical",
    "categorical_crossentropy": "categorical",
    "BinaryCrossentropy": "bernoulli",
    "binary_crossentropy": "bernoulli",
    "MeanSquaredError": "gaussian",
    "mean_squared_error": "gaussian",
}


def _likelihood(loss):
    """(distribution, from_logits) of a Keras negative log-likelihood loss, or a ValueError saying why not."""
    name = type(loss).__name__ if isinstance(loss, keras.losses.Loss) else getattr(loss, "__name__", repr(loss))
    kind = _LIKELIHOODS.get(name)
    if kind is None:
        raise ValueError(
            f"FisherOperator samples labels from the model's predictive distribution, which it knows for softmax "
            f"cross-entropy (sparse or one-hot), sigmoid (binary) cross-entropy and mean squared error; the loss "
            f"is {name}. Use GGNOperator or EmpiricalFisherOperator."
        )
    config = loss.get_config() if isinstance(loss, keras.losses.Loss) else {}
    if config.get("label_smoothing"):
        raise ValueError(
            "With label smoothing the loss is not the negative log-likelihood of the model's "
            "predictive distribution: FisherOperator does not apply. Use GGNOperator."
        )
    if config.get("axis", -1) != -1 or config.get("ignore_class") is not None:
        raise ValueError("FisherOperator needs the classes on the last axis and no ignored class.")
    return kind, bool(config.get("from_logits", False))


class FisherOperator(_OutputCurvature):
    """v ↦ F̂ v, the Fisher (1/N) Σ_n J_nᵀ E_ŷ[∇_f ℓ(ŷ) ∇_f ℓ(ŷ)ᵀ] J_n (+ ∇²R), by Monte Carlo.

    Labels ŷ are drawn from the model's predictive distribution at its
    current outputs: a class per position from softmax(f) (or the
    probabilities f), a bit per element from sigmoid(f) (or f), and
    ŷ = f + ε/√2, ε ~ N(0, I) for squared error (whose negative
    log-likelihood is (y − f)² per element). Each term k of the loss (a
    position, or an element) with weight w_k contributes
    w_k J_kᵀ g_k g_kᵀ J_k, g_k = ∇_f ℓ_k(ŷ_k), averaged over ``samples``
    draws. The draws are stateless, fixed by ``label_seed`` and the current
    outputs, so that the operator is one fixed matrix between weight updates
    (Lanczos needs that); every batch of the probe set reuses the same
    random stream (unbiased; draws are independent across samples, not
    across batches). E F̂ = F, which equals `GGNOperator`'s G for these losses
    from logits and for squared error; the standard error of a quantity is
    the spread over seeds.

    Args:
        samples: Draws per product (default 1).
        label_seed: An int fixing the draws (default 0); a Lanczos or trace
            `seed` is another thing.
        **kwargs: As `HessianOperator`'s arguments, without ``differentiation``.

    Raises:
        ValueError: If the loss is not one of those three negative
            log-likelihoods (or smooths its labels), or `samples` is not a
            positive int; and as `HessianOperator`.
    """

    curvature = "fisher"
    _purpose = "its Fisher"
    _product_name = "a Fisher-vector product"

    def __init__(self, model, data, loss=None, samples=1, label_seed=0, **kwargs):
        samples = check_count("samples", samples, 1)
        super().__init__(model, data, loss=loss, **kwargs)
        self.likelihood, self.from_logits = _likelihood(self.loss)
        self.samples, self.label_seed = samples, int(label_seed)

    def _draw(self, y_pred, seed):
        """(ŷ with no gradient, the per-term negative log-likelihood ℓ(ŷ, ·) as a function of the outputs)."""
        f = y_pred
        if self.likelihood == "categorical":
            classes = tf.shape(f)[-1]
            logits = f if self.from_logits else tf.math.log(f / tf.reduce_sum(f, axis=-1, keepdims=True))
            drawn = tf.random.stateless_categorical(
                tf.reshape(tf.cast(logits, tf.float32) if logits.dtype == tf.bfloat16 else logits, [-1, classes]),
                1,
                seed,
            )
            labels = tf.stop_gradient(tf.reshape(drawn, tf.shape(f)[:-1]))
            return lambda out: keras.losses.sparse_categorical_crossentropy(labels, out, from_logits=self.from_logits)
        if self.likelihood == "bernoulli":
            p = tf.sigmoid(f) if self.from_logits else f
            bits = tf.stop_gradient(tf.cast(tf.random.stateless_uniform(tf.shape(f), seed, dtype=f.dtype) < p, f.dtype))
            return lambda out: keras.losses.binary_crossentropy(
                bits[..., None], out[..., None], from_logits=self.from_logits
            )
        noise = tf.random.stateless_normal(tf.shape(f), seed, dtype=f.dtype)
        targets = tf.stop_gradient(f + noise * np.sqrt(0.5))
        return lambda out: tf.square(targets - out)

    @property
    def _diagonal_rows(self):
        return self.samples

    def _sampled_gradients(self, y_pred, mask):
        """[(g, 1 / w)] per draw: g = ∂(Σ_k w_k ℓ_k(ŷ))/∂f, and a real term's weight w = 1 / (N · terms per example).

        Padded examples (mask 0) have w_k = 0, so g = 0 there.
        """
        draws = []
        for sample in range(self.samples):
            nll = self._draw(y_pred, tf.constant([self.label_seed, sample], tf.int32))
            with tf.GradientTape() as tape:
                tape.watch(y_pred)
                terms = tf.cast(nll(y_pred), self.dtype)
                per_example = tf.cast(tf.size(terms) // tf.shape(terms)[0], self.dtype)
                weights = self.probe.scale / per_example
                if mask is not None:
                    weights = weights * tf.reshape(tf.cast(mask, self.dtype), [-1] + [1] * (terms.shape.rank - 1))
                share = tf.reduce_sum(terms * weights)
            draws.append(
                (
                    tf.cast(tape.gradient(share, y_pred, unconnected_gradients=_ZERO), self.dtype),
                    per_example / self.probe.scale,
                )
            )
        return draws

    def _example_gradients(self, y, y_pred, mask):
        # A draw's per-example gradient u_n = w Σ_t J_tᵀ ∇ℓ_t(ŷ_t) over the example's terms t (w = 1 / (N ·
        # terms)): the cross terms of u_n² have mean 0 (E_ŷ ∇ℓ_t = 0, independent draws), so each draw's
        # (1/w) Σ_n u_n² is an unbiased estimate of diag F; exactly diag F̂'s where an example has one term.
        return self._sampled_gradients(y_pred, mask)

    def _output_product(self, y, y_pred, jv, mask):
        jv = tf.cast(jv, self.dtype)
        total = tf.zeros(tf.shape(y_pred), self.dtype)
        for g, inverse_weight in self._sampled_gradients(y_pred, mask):
            # u_k = w_k g_k (g_kᵀ (J v)_k) with g = w_k ∇ℓ_k: g (gᵀ J v) / w_k (0 where padded: g = 0).
            per_term = g * jv if self.likelihood != "categorical" else tf.reduce_sum(g * jv, axis=-1, keepdims=True)
            total += g * per_term * inverse_weight
        return total / float(self.samples)


CURVATURES = {
    "hessian": HessianOperator,
    "ggn": GGNOperator,
    "fisher": FisherOperator,
    "empirical_fisher": EmpiricalFisherOperator,
}


def curvature_operator(model, data, curvature="hessian", **kwargs):
    """The operator of `curvature` ("hessian", "ggn", "fisher" or "empirical_fisher") over the probe set `data`.

    `kwargs` go to its class (`HessianOperator`, `GGNOperator`, `FisherOperator`,
    `EmpiricalFisherOperator`).

    Raises:
        ValueError: If `curvature` is unknown; and as the class.
    """
    if curvature not in CURVATURES:
        raise ValueError(f"`curvature` must be one of {sorted(CURVATURES)}, got {curvature!r}.")
    return CURVATURES[curvature](model, data, **kwargs)
