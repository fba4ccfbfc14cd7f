r"""What the Hessian tools of `analysis_tools` cost, in one run on the TensorFlow backend.

The model is an MLP 64→256→256→10 (tanh, 85,002 parameters) on the first 1000
images of scikit-learn's `load_digits` (8×8 pixels scaled to [0, 1];
`--data=synthetic` draws Gaussian inputs and labels of a random linear map
instead), with the mean squared error on one-hot targets, as in most of Cohen et
al.'s experiments: full-batch Adam then sharpens towards its stability threshold
and the top of the spectrum crowds (λ2/λ1 ≈ 0.9). With `--loss=crossentropy`
this model memorizes the digits within a hundred steps, the Hessian shrinks with
the loss and its top eigenvalue stays well separated (λ2/λ1 ≈ 0.7): an easy case
for every eigensolver. Three measurements:

1. **HVP ÷ gradient.** `HessianOperator.matvec` (a float64 vector in, H v out)
   against `HessianOperator.gradient()` on the same probe set, for both
   `differentiation`s. Both are `tf.function`s inside; each is called a few times first
   (tracing, warm-up), then the three callables are timed round-robin (every
   repeat times each of them `--calls` times, in a shuffled order). "median" is
   the median over repeats of (HVP time ÷ gradient time of the same repeat);
   "min" is the least disturbed HVP time ÷ the least disturbed gradient time.
   Target: a median ≤ 2.2.

2. **Products to reach a relative error of 1e-3 on λ1**, for H and for the
   preconditioned P⁻¹H (as P^{-1/2} H P^{-1/2}, P from `preconditioner_of` of a
   `tf_adaptive.Adam` after `--train_steps` full-batch steps). The reference λ1
   is a long Lanczos run (80 steps, tolerance 1e-10). From one random start
   vector, shared by all of them:

   * Lanczos, fewest steps: the smallest m whose top Ritz value is within 1e-3
     of the reference. The top Ritz value can only grow with m (T_m is a leading
     submatrix of T_{m+1}: Cauchy interlacing), so m is found by bisection over
     separate solves with ``max_iterations = min_iterations = m`` and a
     negligible tolerance.
   * Lanczos, own rule: what `Lanczos(max_iterations=40, tolerance=1e-3)` takes
     by its residual test, with its default ``min_iterations`` (10, as
     `SharpnessCallback` uses it) and with ``min_iterations=1``, and the error
     it returns.
   * Power iteration (v ← A v / ‖A v‖, estimate vᵀ A v), written here: the
     products until its estimate is within 1e-3, and where PyHessian's rule
     (stop once the estimate changes by less than 1e-3 relative to the
     previous one, at most 100 products; it returns the previous estimate)
     stops, with that estimate's error.

   Then `--more_steps` more training steps, a new reference, and the same
   columns from a **warm start**: the top Ritz vector of the previous
   own-rule run (``return_vectors=True``), the start `SharpnessCallback` uses.
   Targets (Lanczos's own rule, P⁻¹H): ≤ 25 products cold, ≤ 10 warm.

3. **`SharpnessCallback` in `model.fit`.** The same model trained with
   `tf_adaptive.Adam`, minibatches of `--fit_batch_size` from the 1000
   examples, for `--fit_steps` steps (rounded up to whole epochs), with
   measurements every `--every_n_steps` steps on a probe set of the first
   `--fit_probe_examples` examples (and on all of them, in one extra row). Each
   configuration has its own model, optimizer and callback; before timing, each
   is warmed up by one untimed fit just long enough to contain one measurement
   (it traces Keras's train function, the HVP and the Lanczos loop, which a
   real run pays once). Before every fit the weights, the optimizer's variables
   and the callback's records and warm-start vectors are reset, and the batches
   come unshuffled, so every timed fit repeats the same training from scratch.
   (The random seed is not reset between fits: in eager mode
   `tf.random.set_seed` clears TensorFlow's caches, and the next call of every
   `tf.function` is instantiated again, about 0.15 s for the Lanczos loop.)
   The fits are timed round-robin. "overhead" is the minimum over repeats
   divided by the minimum without a callback; "paired median", a check less
   sensitive to slow drifts of the machine's speed, is the median over repeats
   of each fit's time divided by the no-callback fit of the same repeat. "no
   callback, again" is a second, identical configuration without a callback:
   its ratio is the noise of the comparison. "hook only" is a callback whose
   every_n_steps is larger than the run: what the per-step check alone costs.
   The table also gives the mean time of `measure()` inside the timed fits (a
   subclass of the callback times it), the overhead those calls alone account
   for (robust to the noise of whole-fit timings), and the HVPs' share of a
   measurement (their count × one `matvec` timed alone). Target: ≤ 10 %
   overhead at every_n_steps = 100.

    python benchmarks/hessian.py            # about 3 minutes on 2 CPU cores
    python benchmarks/hessian.py --quick    # about 1 minute, fewer repeats
"""

import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from _timing import TimedSharpnessCallback
from absl import app, flags

import tf_adaptive
from analysis_tools import HessianOperator, Lanczos, preconditioner_of
from analysis_tools.preconditioners import stability_threshold_of

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "data",
    "digits",
    ["digits", "synthetic"],
    "scikit-learn's load_digits, or Gaussian inputs with labels from a random linear map.",
)
flags.DEFINE_integer("examples", 1000, "Training (and probe) set size.")
flags.DEFINE_enum(
    "loss",
    "mse",
    ["mse", "crossentropy"],
    "Mean squared error on one-hot targets (as Cohen et al. mostly use), or softmax cross-entropy.",
)
flags.DEFINE_integer("width", 256, "Width of the two hidden layers.")
flags.DEFINE_integer("probe_batch_size", 0, "Batch size of the probe set in parts 1 and 2 (0: one batch).")
flags.DEFINE_integer("repeats", 30, "Part 1: round-robin timings per callable.")
flags.DEFINE_integer("calls", 10, "Part 1: calls per timing.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate (parts 2 and 3).")
flags.DEFINE_integer("train_steps", 200, "Part 2: full-batch Adam steps before the cold measurement.")
flags.DEFINE_integer("more_steps", 10, "Part 2: further full-batch steps before the warm-started one.")
flags.DEFINE_float("accuracy", 1e-3, "Part 2: the relative error on λ1 to reach.")
flags.DEFINE_integer("max_lanczos", 40, "Part 2: most Lanczos steps searched (and the own-rule run's max_iterations).")
flags.DEFINE_integer("power_iterations", 300, "Part 2: most power-iteration products.")
flags.DEFINE_integer("fit_steps", 500, "Part 3: training steps per fit (rounded up to whole epochs).")
flags.DEFINE_integer("fit_batch_size", 64, "Part 3: minibatch size.")
flags.DEFINE_integer("fit_probe_examples", 256, "Part 3: probe set size of the callback (the first examples).")
flags.DEFINE_integer("every_n_steps", 100, "Part 3: the callback's every_n_steps.")
flags.DEFINE_integer("fit_repeats", 10, "Part 3: round-robin timed fits per configuration.")
flags.DEFINE_integer("seed", 0, "Seed for data, weights, start vectors and the round-robin order.")
flags.DEFINE_list("parts", ["1", "2", "3"], "Which of the three measurements to run.")
flags.DEFINE_bool("quick", False, "A shorter run (about a minute): fewer repeats and training steps.")

HVP_TARGET = 2.2
COLD_TARGET = 25
WARM_TARGET = 10
OVERHEAD_TARGET = 0.10
REFERENCE_STEPS = 80
REFERENCE_TOLERANCE = 1e-10
PYHESSIAN_TOLERANCE = 1e-3
PYHESSIAN_MAX_ITER = 100
HOOK_CALLS = 2000


def apply_quick():
    if FLAGS.quick:
        FLAGS.repeats = 8
        FLAGS.calls = 5
        FLAGS.train_steps = 100
        FLAGS.power_iterations = 150
        FLAGS.fit_steps = 300
        FLAGS.fit_repeats = 3


# ---------------------------------------------------------------------- set-up
def dataset():
    rng = np.random.default_rng(FLAGS.seed)
    if FLAGS.data == "digits":
        from sklearn.datasets import load_digits  # only this option needs scikit-learn

        digits = load_digits()
        if FLAGS.examples > len(digits.target):
            raise app.UsageError(f"--examples: load_digits has {len(digits.target)} images.")
        x = (digits.data[: FLAGS.examples] / 16.0).astype("float32")
        y = digits.target[: FLAGS.examples].astype("int32")
    else:
        x = rng.normal(size=(FLAGS.examples, 64)).astype("float32")
        y = np.argmax(x @ rng.normal(size=(64, 10)), axis=1).astype("int32")
    if FLAGS.loss == "mse":
        y = np.eye(10, dtype="float32")[y]
    return x, y


def build_model():
    keras.utils.set_random_seed(FLAGS.seed)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(FLAGS.width, activation="tanh"),
            keras.layers.Dense(FLAGS.width, activation="tanh"),
            keras.layers.Dense(10),
        ]
    )


def loss_function():
    if FLAGS.loss == "mse":
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compiled_model():
    model = build_model()
    optimizer = tf_adaptive.Adam(FLAGS.learning_rate)
    optimizer.build(model.trainable_variables)
    model.compile(optimizer=optimizer, loss=loss_function())
    return model


def probe_batch_size():
    return FLAGS.probe_batch_size or None


def print_table(header, rows):
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = "  ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w) in enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(row, widths))))


# ------------------------------------------------------------- 1. HVP ÷ gradient
def time_products(model, x, y, rng):
    operators = {
        differentiation: HessianOperator(
            model, (x, y), loss=loss_function(), batch_size=probe_batch_size(), differentiation=differentiation
        )
        for differentiation in ("reverse_over_reverse", "forward_over_reverse")
    }
    vector = tf.constant(rng.normal(size=operators["reverse_over_reverse"].dimension))
    calls = {
        "gradient": lambda: operators["reverse_over_reverse"].gradient()[0],
        "reverse_over_reverse": lambda: operators["reverse_over_reverse"].matvec(vector),
        "forward_over_reverse": lambda: operators["forward_over_reverse"].matvec(vector),
    }
    for call in calls.values():  # trace and warm up
        for _ in range(3):
            call().numpy()
    samples = {name: [] for name in calls}
    for _ in range(FLAGS.repeats):
        for name in rng.permutation(list(calls)):
            start = time.perf_counter()
            for _ in range(FLAGS.calls):
                result = calls[name]()
            result.numpy()  # wait for the last product
            samples[name].append((time.perf_counter() - start) / FLAGS.calls)
    samples = {name: np.array(s) for name, s in samples.items()}
    gradient = samples["gradient"]
    print(
        f"1. HVP ÷ gradient: `HessianOperator.matvec` ÷ `HessianOperator.gradient()`, probe set "
        f"{len(x)} examples in {operators['reverse_over_reverse'].num_batches} batch(es); "
        f"{FLAGS.repeats} round-robin timings of {FLAGS.calls} calls. Target: median ≤ {HVP_TARGET}.\n"
    )
    rows = [["gradient()", f"{1e3 * np.median(gradient):.2f}", f"{1e3 * gradient.min():.2f}", "1.00", "1.00", ""]]
    for differentiation in operators:
        hvp = samples[differentiation]
        median = float(np.median(hvp / gradient))
        least = float(hvp.min() / gradient.min())
        verdict = "met" if median <= HVP_TARGET else "missed"
        rows.append(
            [
                f"matvec, {differentiation}",
                f"{1e3 * np.median(hvp):.2f}",
                f"{1e3 * hvp.min():.2f}",
                f"{median:.2f}",
                f"{least:.2f}",
                verdict,
            ]
        )
    print_table(["call", "median ms", "min ms", "÷ grad (median)", "÷ grad (min)", f"median ≤ {HVP_TARGET}"], rows)
    print()


# --------------------------------------------------- 2. Lanczos vs power iteration
class Study:
    """Lanczos and power iteration on one operator (H or P^{-1/2} H P^{-1/2})."""

    def __init__(self, name, operator, matvec):
        self.name = name
        self.matvec = matvec
        self.dimension = operator.dimension
        self.reference_solver = Lanczos(
            self.dimension, max_iterations=REFERENCE_STEPS, k=2, tolerance=REFERENCE_TOLERANCE, seed=FLAGS.seed
        )
        self.rule_solvers = {
            minimum: Lanczos(
                self.dimension,
                max_iterations=FLAGS.max_lanczos,
                k=1,
                tolerance=FLAGS.accuracy,
                min_iterations=minimum,
                return_vectors=True,
                seed=FLAGS.seed,
            )
            for minimum in (None, 1)
        }
        self.previous_vector = None
        self.next_vector = None

    def reference(self, start):
        result = self.reference_solver(self.matvec, start)
        values = result.eigenvalues.numpy()
        return values[0], values[1], float(result.residuals[0]) / abs(values[0]), int(result.iterations)

    def fewest_lanczos_steps(self, start, reference):
        """The smallest m whose top Ritz value is within the accuracy (bisection, see the docstring)."""
        errors = {}

        def error(m):
            if m not in errors:
                solver = Lanczos(
                    self.dimension, max_iterations=m, min_iterations=m, k=1, tolerance=1e-14, seed=FLAGS.seed
                )
                errors[m] = relative_error(float(solver(self.matvec, start).eigenvalues[0]), reference)
            return errors[m]

        low, high = 0, FLAGS.max_lanczos
        if abs(error(high)) > FLAGS.accuracy:
            return None
        while high - low > 1:
            middle = (low + high) // 2
            if abs(error(middle)) <= FLAGS.accuracy:
                high = middle
            else:
                low = middle
        return high

    def own_rule(self, start, reference):
        """(steps, error) of the tolerance-1e-3 solver per min_iterations; keeps the default's top vector."""
        out = {}
        for minimum, solver in self.rule_solvers.items():
            result = solver(self.matvec, start)
            out[minimum] = (int(result.iterations), relative_error(float(result.eigenvalues[0]), reference))
            if minimum is None:
                self.next_vector = result.eigenvectors[0]
        return out

    def power_iteration(self, start, reference):
        """(products to reach the accuracy, PyHessian's stop, its returned estimate's error)."""
        v = start / tf.norm(start)
        estimates, reached = [], None
        pyhessian = None
        for k in range(1, FLAGS.power_iterations + 1):
            w = self.matvec(v)
            estimates.append(float(tf.tensordot(v, w, 1)))
            v = w / tf.norm(w)
            if reached is None and abs(relative_error(estimates[-1], reference)) <= FLAGS.accuracy:
                reached = k
            if pyhessian is None and k >= 2:
                previous = estimates[-2]
                if abs(previous - estimates[-1]) / (abs(previous) + 1e-6) < PYHESSIAN_TOLERANCE:
                    pyhessian = (k, relative_error(previous, reference))
                elif k == PYHESSIAN_MAX_ITER:
                    pyhessian = (k, relative_error(estimates[-1], reference))
            if reached is not None and pyhessian is not None:
                break
        return reached, pyhessian

    def measure(self, start):
        """Every column for one start vector; keeps the own-rule top vector for the next warm start."""
        reference, second, residual, reference_steps = self.reference(start)
        rule = self.own_rule(start, reference)
        reached, pyhessian = self.power_iteration(start, reference)
        self.previous_vector = self.next_vector
        return {
            "lambda": reference,
            "gap": second / reference,
            "residual": residual,
            "reference steps": reference_steps,
            "fewest": self.fewest_lanczos_steps(start, reference),
            "rule": rule[None],
            "rule min 1": rule[1],
            "power": reached,
            "pyhessian": pyhessian,
        }


def relative_error(estimate, reference):
    return (estimate - reference) / abs(reference)


def count_products(model, x, y, rng):
    optimizer = model.optimizer
    operator = HessianOperator(model, (x, y), loss=loss_function(), batch_size=probe_batch_size())
    operator.set_preconditioner(preconditioner_of(optimizer, model.trainable_variables))
    studies = [Study("H", operator, operator.matvec), Study("P⁻¹H", operator, operator.preconditioned_matvec)]
    start = tf.constant(rng.normal(size=operator.dimension))
    threshold = stability_threshold_of(optimizer)
    results = []
    steps = int(optimizer.iterations.numpy())
    for study in studies:
        results.append((study.name, f"cold, step {steps}", study.measure(start)))
    model.fit(x, y, batch_size=len(x), epochs=FLAGS.more_steps, shuffle=False, verbose=0)
    operator.set_preconditioner(preconditioner_of(optimizer, model.trainable_variables))
    steps = int(optimizer.iterations.numpy())
    for study in studies:
        results.append((study.name, f"warm, step {steps}", study.measure(study.previous_vector)))
    results.sort(key=lambda r: r[0] != "H")  # stable: H cold, H warm, P⁻¹H cold, P⁻¹H warm
    print(
        f"2. Products (HVPs) to a relative error of {FLAGS.accuracy:g} on λ1, after full-batch "
        f"tf_adaptive.Adam(η={FLAGS.learning_rate:g}) training, loss {FLAGS.loss} (stability threshold "
        f"of λ1(P⁻¹H): 38/η = {threshold:g}). Reference: Lanczos, at most {REFERENCE_STEPS} steps, "
        f"tolerance {REFERENCE_TOLERANCE:g} (its relative residual and steps in the column). Errors are "
        f"signed, (estimate − λ1)/λ1. Cold: one random start shared by all methods; warm: the top Ritz "
        f"vector of the previous own-rule run, after {FLAGS.more_steps} more steps. Targets (own rule, "
        f"P⁻¹H): ≤ {COLD_TARGET} cold, ≤ {WARM_TARGET} warm.\n"
    )
    rows = []
    for name, start_name, r in results:
        rows.append(
            [
                name,
                start_name,
                f"{r['lambda']:.6g}",
                f"{r['gap']:.3f}",
                f"{r['residual']:.0e} ({r['reference steps']})",
                "—" if r["fewest"] is None else str(r["fewest"]),
                f"{r['rule'][0]} ({r['rule'][1]:+.0e})",
                f"{r['rule min 1'][0]} ({r['rule min 1'][1]:+.0e})",
                f">{FLAGS.power_iterations}" if r["power"] is None else str(r["power"]),
                "—" if r["pyhessian"] is None else f"{r['pyhessian'][0]} ({r['pyhessian'][1]:+.1e})",
            ]
        )
    print_table(
        [
            "operator",
            "start",
            "λ1",
            "λ2/λ1",
            "reference",
            "Lanczos fewest",
            "own rule (err)",
            "own rule, min_it 1 (err)",
            "power to 1e-3",
            "PyHessian stop (err)",
        ],
        rows,
    )
    print(
        "   Lanczos fewest: smallest m within the accuracy; own rule: Lanczos(max_iterations="
        f"{FLAGS.max_lanczos}, tolerance={FLAGS.accuracy:g}) with its default min_iterations (10), "
        "as SharpnessCallback runs it."
    )
    for name, start_name, r in results:
        if name == "P⁻¹H":
            target = COLD_TARGET if start_name.startswith("cold") else WARM_TARGET
            print(
                f"   P⁻¹H {start_name}: own rule took {r['rule'][0]} products, target ≤ {target}: "
                f"{'met' if r['rule'][0] <= target else 'missed'}"
            )
    print()


# ------------------------------------------------------------ 3. callback overhead
class FitTimer:
    """One configuration: its own model, optimizer and (optional) callback."""

    def __init__(self, x, y, callback_factory):
        self.x, self.y = x, y
        self.model = compiled_model()
        self.weights = self.model.get_weights()
        self.optimizer_values = [v.numpy() for v in self.model.optimizer.variables]
        self.callback = callback_factory() if callback_factory else None
        self.steps_per_epoch = math.ceil(len(x) / FLAGS.fit_batch_size)

    def reset(self):
        self.model.set_weights(self.weights)
        for variable, value in zip(self.model.optimizer.variables, self.optimizer_values):
            variable.assign(value)
        if self.callback is not None:
            self.callback.records.clear()
            self.callback.mark_measured(0)
            # A fresh fit starts Lanczos cold; only the traced functions are kept.
            getattr(self.callback, "_previous_vectors", {}).clear()

    def fit(self, steps):
        self.reset()
        epochs = math.ceil(steps / self.steps_per_epoch)
        callbacks = [self.callback] if self.callback is not None else []
        start = time.perf_counter()
        self.model.fit(
            self.x,
            self.y,
            batch_size=FLAGS.fit_batch_size,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
        self.model.trainable_variables[0].numpy()
        return time.perf_counter() - start, epochs * self.steps_per_epoch


def hvp_milliseconds(model, data):
    """Median time of one HVP (`matvec`, a `tf.function`) on `data` at the model's weights."""
    operator = HessianOperator(model, data, loss=loss_function())
    vector = tf.constant(np.random.default_rng(FLAGS.seed).normal(size=operator.dimension))
    for _ in range(3):
        operator.matvec(vector).numpy()
    times = []
    for _ in range(20):
        start = time.perf_counter()
        operator.matvec(vector).numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def time_callback(x, y, rng):
    probe = (x[: FLAGS.fit_probe_examples], y[: FLAGS.fit_probe_examples])
    n = FLAGS.every_n_steps

    def callback(data, raw, every=n):
        return lambda: TimedSharpnessCallback(data, every_n_steps=every, raw=raw, preconditioned=True)

    configurations = {  # name → (callback factory, probe set)
        "no callback": (None, None),
        "no callback, again": (None, None),  # a second, identical model: the noise floor
        "hook only": (callback(probe, False, every=10**9), None),
        f"P⁻¹H, probe {len(probe[0])}": (callback(probe, False), probe),
        f"H + P⁻¹H, probe {len(probe[0])}": (callback(probe, True), probe),
    }
    if FLAGS.fit_probe_examples < len(x):
        configurations[f"P⁻¹H, probe {len(x)}"] = (callback((x, y), False), (x, y))
    timers = {name: FitTimer(x, y, factory) for name, (factory, _) in configurations.items()}
    for timer in timers.values():  # warm up: the shortest fit that contains one measurement
        timer.fit(n)
    samples = {name: [] for name in timers}
    for _ in range(FLAGS.fit_repeats):
        for name in rng.permutation(list(timers)):
            seconds, steps = timers[name].fit(FLAGS.fit_steps)
            samples[name].append(seconds)
    hook_callback = timers["hook only"].callback
    start = time.perf_counter()
    for batch in range(HOOK_CALLS):  # the per-step check alone: the batch hooks called directly
        hook_callback.on_train_batch_begin(batch, None)
        hook_callback.on_train_batch_end(batch, {})
    check_ms = 1e3 * (time.perf_counter() - start) / HOOK_CALLS
    best = {name: min(s) for name, s in samples.items()}
    base, hook = best["no callback"], best["hook only"]
    step_ms = 1e3 * base / steps
    trained = timers["no callback"].model  # at the end of a timed fit, as the callbacks' last measurement
    hvp_ms = {len(data[0]): hvp_milliseconds(trained, data) for _, data in configurations.values() if data is not None}
    print(
        f"3. SharpnessCallback(every_n_steps={n}, tolerance=1e-3, max_iterations=40, warm_start=True) in "
        f"`model.fit`: {steps} steps of batch {FLAGS.fit_batch_size} over {len(x)} examples "
        f"({step_ms:.2f} ms per step without the callback); min of {FLAGS.fit_repeats} round-robin "
        f"fits after one warm-up fit each. Target: ≤ {OVERHEAD_TARGET:.0%} overhead.\n"
    )
    records = {name: t.callback.records if t.callback is not None else [] for name, t in timers.items()}
    # measure() inside the timed fits (the warm-up fits excluded), per measurement.
    inside = {
        name: 1e3 * float(np.mean(t.callback.seconds[1:]))
        for name, t in timers.items()
        if t.callback is not None and len(t.callback.seconds) > 1
    }
    rows = []
    for name, timer in timers.items():
        measured = len(records[name])
        products = [sum(r.iterations.values()) for r in records[name]]
        data = configurations[name][1]
        per_measurement = 1e3 * (best[name] - hook) / measured if measured else None
        in_products = sum(products) / measured * hvp_ms[len(data[0])] if measured else None
        overhead = best[name] / base - 1
        paired = float(np.median(np.array(samples[name]) / np.array(samples["no callback"]))) - 1
        rows.append(
            [
                name,
                f"{best[name]:.3f}",
                f"{best[name] / base:.3f}",
                f"{100 * overhead:+.1f} %",
                f"{100 * paired:+.1f} %",
                str(measured),
                " ".join(str(p) for p in products) or "—",
                "—" if per_measurement is None else f"{per_measurement:.0f}",
                f"{inside[name]:.0f}" if name in inside else "—",
                f"{100 * measured * inside[name] / 1e3 / base:.1f} %" if name in inside and measured else "—",
                "—" if in_products is None else f"{in_products:.0f}",
                "—" if per_measurement is None else f"{per_measurement / step_ms:.0f}",
                "" if timer.callback is None else ("met" if overhead <= OVERHEAD_TARGET else "missed"),
            ]
        )
    print_table(
        [
            "configuration",
            "fit s",
            "× none",
            "overhead",
            "paired median",
            "measurements",
            "HVPs per measurement",
            "ms per measurement",
            "measure() in fit",
            "Σ measure() ÷ fit",
            "HVPs alone",
            "≈ train steps",
            f"≤ {OVERHEAD_TARGET:.0%}",
        ],
        rows,
    )
    print(
        f"   hook only: every_n_steps beyond the run, so no measurement: the per-step check alone, "
        f"{1e3 * (hook - base) / steps:.3f} ms per step from the fit times, {check_ms:.3f} ms per call "
        f"when the batch hooks are called directly. ms per measurement: (fit − hook only) ÷ "
        f"measurements; measure() in fit: the mean time of the callback's `measure()` calls in the "
        f"timed fits; Σ measure() ÷ fit: measurements × that ÷ the fit without a callback, the "
        f"overhead the measurements alone account for; HVPs alone: the mean HVPs per measurement × one "
        f"`matvec` timed alone ("
        + ", ".join(f"{ms:.1f} ms on {size}" for size, ms in hvp_ms.items())
        + "); ≈ train steps: ms per measurement ÷ ms per step."
    )
    print()


def main(argv):
    del argv
    # Each Lanczos instance traces its own loop on purpose; keep the retracing notice out of the tables.
    tf.get_logger().setLevel("ERROR")
    apply_quick()
    rng = np.random.default_rng(FLAGS.seed)
    x, y = dataset()
    model = compiled_model()
    parameters = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CPU, no XLA; MLP 64→{FLAGS.width}→"
        f"{FLAGS.width}→10 tanh ({parameters:,} parameters), {FLAGS.data} data, {len(x)} examples, "
        f"loss {FLAGS.loss}"
        f"{' (--quick)' if FLAGS.quick else ''}\n"
    )
    start = time.perf_counter()
    # Parts 1 and 2 look at the model after full-batch training (part 1's timings do not depend on it).
    model.fit(x, y, batch_size=len(x), epochs=FLAGS.train_steps, shuffle=False, verbose=0)
    if "1" in FLAGS.parts:
        time_products(model, x, y, rng)
    if "2" in FLAGS.parts:
        count_products(model, x, y, rng)
    if "3" in FLAGS.parts:
        time_callback(x, y, rng)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
