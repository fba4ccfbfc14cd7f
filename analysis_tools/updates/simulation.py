"""Simulate the law of an optimizer's normalized update under a chosen gradient law.

Zhang and Ziyin, "On the Distributional Properties of Adaptive Gradients"
(UAI 2021), define the update as Δθ := (θ_t − θ_{t−1}) / η and derive its law
for i.i.d. N(0, σ²) gradients, no momentum and a simple-average
preconditioner over m = t samples (Theorem 1: x²/m ~ Beta(1/2, (m−1)/2) with a
random sign, on [−√m, √m]; see `analysis_tools.AdaptiveUpdate`). Their §6
studies laws the theorem does not cover by simulation: a growing or shrinking
gradient scale (Fig. 5), a non-zero mean (Fig. 6) and a heavy-tailed (Cauchy)
gradient (Fig. 7). `simulate_updates` runs those simulations through a real
Keras optimizer, vectorized over a single variable whose coordinates are
independent samples, and `find_modes` / `count_modes` count the modes of the
resulting laws (the paper's bi-modal → unimodal transition and the tri-modal
Cauchy law).

Which optimizer gives the paper's law exactly
---------------------------------------------
* **Simple average, no momentum (the Adagrad form).** At step t the
  preconditioner averages m = t squared gradients. `tf_adaptive.Adagrad`
  (with ``epsilon=0, initial_accumulator_value=0``) divides by sqrt(Σ_{i≤t} g_i²),
  a *sum*, so its Δθ/η = −g_t / sqrt(Σ g²) = −(1/√t) · g_t / sqrt(mean g²):
  the paper's update is x = √t · Δθ/η, which follows AdaptiveUpdate(t) exactly.
  `keras.optimizers.Adagrad` is the same up to its defaults (accumulator
  starting at 0.1 and ε inside the square root), so the √t rescaling is only
  approximate for it unless ``initial_accumulator_value`` is tiny.
* **Exponential averages (Adam, RMSProp, ...).** With β1 = 0 and bias
  correction, Adam's Δθ/η = −g_t / sqrt(v̂_t) uses EMA weights instead of a
  simple average; the paper maps β2 to an effective sample count
  m_eff = 2 / (1 − β2) (its Eq. 12), which is an approximation: e.g. at t = 2
  the EMA bounds x² by 1 + β2 < 2 and cuts off the arcsine poles, and the
  variance of x settles below 1 (≈ 0.92 for β2 = 0.9). RMSProp has no bias
  correction, so its first steps are inflated by 1 / sqrt(1 − β2^t).

Sign
----
The returned value is (θ_t − θ_{t−1}) / η as applied, i.e. the *negative* of
the normalized step direction g / P (for a plain preconditioned step
θ_t = θ_{t−1} − η g_t / P_t, Δθ/η = −g_t / P_t). For i.i.d. gradients with a
zero-mean symmetric law (the "normal", "normal_growing", "normal_shrinking"
and "cauchy" laws) the sign does not change the law of Δθ/η. It does for a
non-zero mean: a gradient with negative mean (N(−1, 1), N(−t, 1)) gives
updates that are mostly *positive* (the update opposes the gradient).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from analysis_tools._backend import require_tensorflow_backend

__all__ = ["GRADIENT_LAWS", "adagrad_normalization", "count_modes", "find_modes", "simulate_updates"]

GRADIENT_LAWS = ("normal", "normal_growing", "normal_shrinking", "shifted", "drifting", "cauchy")


# ------------------------------------------------------------ gradient laws
def _named_law(name, scale):
    """The gradient law `name` as a callable (step, shape, seed) -> float32 tensor."""

    def normal(step, shape, seed):
        return tf.random.stateless_normal(shape, seed, dtype=tf.float32)

    def t_of(step):
        return tf.cast(step, tf.float32)

    if name == "normal":
        return lambda step, shape, seed: scale * normal(step, shape, seed)
    if scale != 1.0:
        raise ValueError(f"`scale` applies to the 'normal' law only, got scale={scale} with {name!r}.")
    if name == "normal_growing":  # N(0, t²)
        return lambda step, shape, seed: t_of(step) * normal(step, shape, seed)
    if name == "normal_shrinking":  # N(0, 1/t²)
        return lambda step, shape, seed: normal(step, shape, seed) / t_of(step)
    if name == "shifted":  # N(−1, 1)
        return lambda step, shape, seed: normal(step, shape, seed) - 1.0
    if name == "drifting":  # N(−t, 1)
        return lambda step, shape, seed: normal(step, shape, seed) - t_of(step)
    if name == "cauchy":  # standard Cauchy, tan(π (u − 1/2)) with u uniform on (0, 1)

        def cauchy(step, shape, seed):
            u = tf.random.stateless_uniform(shape, seed, minval=0.0, maxval=1.0, dtype=tf.float32)
            u = tf.clip_by_value(u, 1e-7, 1.0 - 1e-7)
            return tf.tan(math.pi * (u - 0.5))

        return cauchy
    raise ValueError(f"Unknown gradient law {name!r}; expected one of {GRADIENT_LAWS} or a callable.")


def _resolve_law(gradient_law, scale):
    if callable(gradient_law):
        if scale != 1.0:
            raise ValueError("`scale` applies to the 'normal' law only, not to a callable law.")
        return gradient_law
    if isinstance(gradient_law, str):
        return _named_law(gradient_law, float(scale))
    raise ValueError(f"`gradient_law` must be a string or a callable, got {gradient_law!r}.")


def _resolve_optimizer(optimizer):
    if not isinstance(optimizer, keras.optimizers.Optimizer) and callable(optimizer):
        optimizer = optimizer()
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(
            "`optimizer` must be a Keras optimizer or a zero-argument factory returning one, "
            f"got {type(optimizer).__name__}."
        )
    if optimizer.built:
        raise ValueError(
            f"{type(optimizer).__name__} is already built (it has state for other variables): "
            "pass a fresh optimizer, or a zero-argument factory returning one."
        )
    if getattr(optimizer, "gradient_accumulation_steps", None):
        raise ValueError(
            "`gradient_accumulation_steps` is set: the variable would move only every few "
            "gradients, so Δθ/η would not be one update per gradient."
        )
    return optimizer


def _current_learning_rate(optimizer):
    """η of the next update: the schedule at the current step count, or the current value."""
    return tf.cast(tf.convert_to_tensor(optimizer.learning_rate), tf.float32)


# --------------------------------------------------------------- simulation
def simulate_updates(optimizer, gradient_law, steps, num_parameters, seed=0, scale=1.0):
    """Δθ/η of `optimizer` for `steps` gradient draws, on `num_parameters` independent coordinates.

    The optimizer is built on one float32 variable of shape [num_parameters],
    initialized at zero; at step t = 1, ..., `steps` a gradient of that shape is
    drawn from `gradient_law` (every coordinate an independent sample), applied
    with ``optimizer.apply``, and (θ_t − θ_{t−1}) / η_t is recorded, η_t being
    the learning rate that update used (a schedule evaluated at step t − 1).
    The whole loop runs in one `tf.function` (a `tf.range` loop); random numbers
    come from stateless ops seeded by (`seed`, t), so the result is
    deterministic given `seed` and the global random state is never touched.

    This reproduces the simulations of Zhang and Ziyin (2021, §6, Figs. 5–7);
    see the module docstring for which optimizer forms follow their Theorem 1
    exactly (the Adagrad form, after multiplying by √t) and which only
    approximately (EMA preconditioners).

    Args:
        optimizer: A Keras optimizer instance (tf_adaptive's or a Keras
            built-in), not yet built, or a zero-argument factory returning one.
            It is built on the simulation variable and stepped `steps` times
            (its state changes). A `LossScaleOptimizer` is unwrapped (its inner
            optimizer is used, since the simulated gradients are not scaled).
        gradient_law: One of
            ``"normal"``: N(0, σ²) with σ = `scale`;
            ``"normal_growing"``: N(0, t²);
            ``"normal_shrinking"``: N(0, 1/t²);
            ``"shifted"``: N(−1, 1);
            ``"drifting"``: N(−t, 1);
            ``"cauchy"``: the standard Cauchy law;
            or a callable ``(step, shape, seed) -> tensor`` with `step` the
            int32 step count t (from 1) as a scalar tensor, `shape` the
            gradient's shape and `seed` a shape-[2] int32 tensor for
            ``tf.random.stateless_*`` ops (it differs between steps).
        steps: The number of updates.
        num_parameters: The number of independent coordinates.
        seed: An integer seed of the gradient draws.
        scale: σ of the ``"normal"`` law (an error with any other law).

    Returns:
        A float32 numpy array [steps, num_parameters]: row t − 1 is
        (θ_t − θ_{t−1}) / η_t, the update *as applied* (the negative of the
        normalized step direction; the sign does not matter for the law when
        the gradients are i.i.d., zero-mean and symmetric). θ is float32 and
        starts at 0; the difference has a relative rounding error of about
        2⁻²⁴ |θ_t| / |θ_t − θ_{t−1}|, small while θ_t is within a few thousand
        steps of 0.
    """
    require_tensorflow_backend("simulate_updates")
    steps = int(steps)
    num_parameters = int(num_parameters)
    if steps < 1 or num_parameters < 1:
        raise ValueError(f"`steps` and `num_parameters` must be >= 1, got {steps}, {num_parameters}.")
    law = _resolve_law(gradient_law, scale)
    optimizer = _resolve_optimizer(optimizer)
    variable = keras.Variable(np.zeros([num_parameters], "float32"), dtype="float32", name="simulated")
    optimizer.build([variable])
    shape = tf.constant([num_parameters], tf.int32)
    seed = int(seed)

    @tf.function(autograph=True)
    def run():
        updates = tf.TensorArray(tf.float32, size=steps, element_shape=[num_parameters])
        for i in tf.range(steps):
            t = i + 1
            gradient = tf.cast(law(t, shape, tf.stack([tf.constant(seed, tf.int32), t])), tf.float32)
            gradient = tf.ensure_shape(gradient, [num_parameters])
            before = tf.identity(variable.value)
            learning_rate = tf.identity(_current_learning_rate(optimizer))
            with tf.control_dependencies([before, learning_rate]):
                optimizer.apply([gradient], [variable])
            after = tf.convert_to_tensor(variable.value)
            updates = updates.write(i, (after - before) / learning_rate)
        return updates.stack()

    # One trace per call is inherent (a new optimizer and variable each time);
    # calling the concrete function keeps TF's frequent-retracing warning quiet.
    return run.get_concrete_function()().numpy()


def adagrad_normalization(steps):
    """√t for t = 1, ..., `steps` as a column: multiply a sum-form Adagrad's Δθ/η by it.

    Adagrad divides by sqrt(Σ_{i≤t} g_i²) (a sum, not a mean), so its
    Δθ/η is (1/√t) times the simple-average update of Zhang and Ziyin (2021,
    Theorem 1, m = t). ``adagrad_normalization(steps) * simulate_updates(...)``
    (or the callback's recorded values) follows AdaptiveUpdate(t) in row t − 1.
    """
    return np.sqrt(np.arange(1, int(steps) + 1, dtype="float64"))[:, None]


# -------------------------------------------------------------------- modes
def _smooth(histogram, width):
    if width <= 0:
        return histogram.astype("float64")
    radius = max(1, int(math.ceil(3 * width)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / width) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(histogram.astype("float64"), radius, mode="reflect")
    return np.convolve(padded, kernel, mode="valid")


def _prominences(heights, peaks):
    """Topographic prominence of each peak, with zero density outside the histogram's range.

    On each side, walk away from the peak until a higher bin, keeping the
    lowest bin passed; a side that leaves the range first has a low of 0
    (nothing is there). The prominence is the peak's height above the higher
    of the two lows, so the highest peak's prominence is its height.
    """
    prominences = []
    for i in peaks:
        lows = []
        for direction in (-1, 1):
            j, lowest = i + direction, heights[i]
            while 0 <= j < len(heights) and heights[j] <= heights[i]:
                lowest = min(lowest, heights[j])
                j += direction
            lows.append(lowest if 0 <= j < len(heights) else 0.0)
        prominences.append(heights[i] - max(lows))
    return np.asarray(prominences)


def find_modes(samples, bins=80, value_range=None, smoothing=1.5, min_height=0.1, min_prominence=0.05):
    """The locations of the modes of the empirical law of `samples`.

    A histogram of `bins` equal bins over `value_range` (default: the samples'
    minimum to maximum, which suits the bounded update laws of Zhang and Ziyin,
    2021) is smoothed with a Gaussian kernel of `smoothing` bins (reflected at
    the ends, so a pole at an end of the support, like the arcsine law's at
    ±√2, stays a mode). A bin is a mode if it is a local maximum (the end bins
    compare with their one neighbour; plateaus count once), at least
    `min_height` × the highest bin, and its topographic prominence (its height
    above the higher of the two lowest points separating it from higher bins,
    the density being 0 outside the range) is at least `min_prominence` × the
    highest bin, so most sampling noise on a flat law does not count. The
    highest bin always counts (its prominence is its height). A flat law (the
    uniform law of m = 3) has no well-defined mode count: expect 1, sometimes 2.

    Returns:
        A float64 array of the modes' bin centres, ascending.
    """
    samples = np.asarray(samples, dtype="float64").ravel()
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return np.zeros([0])
    if value_range is None:
        value_range = (samples.min(), samples.max())
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        return np.asarray([lo])
    counts, edges = np.histogram(samples, bins=int(bins), range=(lo, hi))
    heights = _smooth(counts, float(smoothing))
    top = heights.max()
    if top <= 0:
        return np.zeros([0])
    peaks = []
    n = len(heights)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and heights[j + 1] == heights[i]:  # a plateau [i, j]
            j += 1
        left = heights[i - 1] if i > 0 else -np.inf
        right = heights[j + 1] if j + 1 < n else -np.inf
        if heights[i] > left and heights[i] > right:
            peaks.append((i + j) // 2)
        i = j + 1
    peaks = np.asarray(peaks, dtype=int)
    if peaks.size == 0:
        return np.zeros([0])
    prominence = _prominences(heights, peaks)
    keep = (heights[peaks] >= min_height * top) & (prominence >= min_prominence * top)
    centres = 0.5 * (edges[:-1] + edges[1:])
    return centres[peaks[keep]]


def count_modes(samples, **kwargs):
    """The number of modes of the empirical law of `samples` (see `find_modes` for the options)."""
    return int(len(find_modes(samples, **kwargs)))
