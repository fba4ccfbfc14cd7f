r"""Memory bandwidth of every element-wise optimizer update, against a hand-fused Adam floor (JAX).

An element-wise update is bound by memory traffic: it reads the parameter,
the gradient and each slot, and writes the parameter and each slot (Adam
7 floats per parameter, one-slot methods 5, plain sign descent 3). This
script measures, on the JAX backend (CPU or GPU) and in one run:

* **update**, for each element-wise tf_adaptive optimizer and Keras's
  built-ins: `jax.jit(optimizer.stateless_apply)` on fixed gradients,
  (a) on a few large arrays (8 × 4096² float32 on a GPU, 8 × 1024² on a CPU)
  and (b) on many small ones (200 × 256²). Columns: ms per step without and
  with buffer donation of the optimizer and trainable variables, the number
  of array copies XLA inserted into the donated step, the bytes per step (as
  floats per parameter), the effective GB/s (bytes ÷ the better time) and the
  ratio to the floor: the time ÷ (the method's own bytes ÷ the fused Adam's
  GB/s). A line under each table gives the cost of calling a jitted no-op on
  the same arrays, the dispatch overhead included in every row.
* **floor**: a hand-written Adam update, one jitted function
  (p, m, v, t, g) -> (p, m, v, t) over all arrays, timed the same way; a
  hand-fused momentum SGD is printed beside it for reference.
* **train step** (c): forward, backward and update of a small causal
  transformer (embedding, `--blocks` blocks of LayerNorm, MultiHeadAttention
  and a Dense MLP) in one jitted function (`model.stateless_call`,
  `jax.value_and_grad`, `optimizer.stateless_apply`), tf_adaptive.Adam
  against keras.optimizers.Adam, without and with donation.

The bytes are not hard-coded: they are read off the update's jaxpr (every
input the computation uses is read once, every output that is not an input
passed through unchanged is written once), so a slot that is only read
(FrozenAdam's preconditioner) counts as read, and one overwritten without
being read as written only. The
"slots" column counts the optimizer's own non-scalar variables per trainable
variable, after `build`.

**Donation and output order.** JAX pairs donated inputs with outputs by
shape and dtype, first come first served, not by position.
`stateless_apply(optimizer_variables, grads, trainable_variables)` returns
`(trainable_variables, optimizer_variables)`, the reverse order, so when
slots and parameters have the same shapes every new parameter is written
into a slot's buffer and vice versa, and XLA inserts copies to keep the
inputs it still reads. The "donated" columns therefore return the new values
in the order of the inputs, `(optimizer_variables, trainable_variables)`,
and are compiled with `keep_unused=True` (otherwise JAX drops a donated
input that the step never reads, such as a slot it overwrites, and the
pairing shifts again). A table after
each update table shows, for `--pairing_optimizers`, the time and the
number of array copies in the compiled HLO with `stateless_apply`'s own
output order; the train step has the same column.

Timings: each repeat runs `--steps` steps (the state threaded through, as in
training) and waits with `block_until_ready`; the table gives the minimum
over `--repeats` repeats, taken round-robin in a shuffled order so that drift
in the machine's speed hits all rows alike. TensorFlow is not needed (nor
imported): jax, keras (with its own requirements) and absl are. Every row's
state stays on the device for the whole case (about 35 GB for the GPU size).

    KERAS_BACKEND=jax python benchmarks/bandwidth.py
    KERAS_BACKEND=jax python benchmarks/bandwidth.py --quick            # fewer repeats
    KERAS_BACKEND=jax python benchmarks/bandwidth.py --large_side=4096  # the GPU size on any device
    KERAS_BACKEND=jax python benchmarks/bandwidth.py --cases=large --optimizers=Adam,HeavyBall
"""

import os
import re
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import jaxlib
import keras
import numpy as np
from absl import app, flags

try:
    import tf_adaptive
except ImportError:  # not installed: the package next to benchmarks/
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import tf_adaptive

FLAGS = flags.FLAGS
flags.DEFINE_list("cases", ["large", "small", "train"], "Which measurements: large, small, train.")
flags.DEFINE_integer(
    "large_side", 0, "Side of the large case's square arrays (0: 4096 on a GPU or TPU, 1024 on a CPU).", lower_bound=0
)
flags.DEFINE_integer("large_count", 8, "Number of arrays in the large case.", lower_bound=1)
flags.DEFINE_integer("small_side", 256, "Side of the small case's square arrays.", lower_bound=1)
flags.DEFINE_integer("small_count", 200, "Number of arrays in the small case.", lower_bound=1)
flags.DEFINE_integer("steps", 10, "Steps per timing.", lower_bound=1)
flags.DEFINE_integer("repeats", 10, "Round-robin timings per row; the minimum is reported.", lower_bound=1)
flags.DEFINE_bool("quick", False, "Fewer steps and repeats (3 and 4), a shorter train step timing.")
flags.DEFINE_float("learning_rate", 1e-4, "Learning rate of every optimizer.")
flags.DEFINE_list("optimizers", [], "Only these update rows (names as printed); the floor is always timed.")
flags.DEFINE_list(
    "pairing_optimizers",
    ["keras Adam", "keras SGD(momentum)", "Adam", "HeavyBall"],
    "Rows of the last table (donation with stateless_apply's own output order); empty: none.",
)
flags.DEFINE_integer("width", 0, "Transformer width (0: 512 on a GPU or TPU, 128 on a CPU).", lower_bound=0)
flags.DEFINE_integer("blocks", 2, "Transformer blocks.", lower_bound=1)
flags.DEFINE_integer("heads", 4, "Attention heads.", lower_bound=1)
flags.DEFINE_integer("seq_len", 0, "Tokens per sequence (0: 256 on a GPU or TPU, 64 on a CPU).", lower_bound=0)
flags.DEFINE_integer("batch_size", 0, "Sequences per batch (0: 32 on a GPU or TPU, 16 on a CPU).", lower_bound=0)
flags.DEFINE_integer("vocab", 256, "Vocabulary size.", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Seed for data, weights and the round-robin order.")

# Not element-wise, so not in the update tables: Adafactor's second moment is factored into row and
# column statistics (it reads and writes far less than one float per parameter and slot).
NOT_ELEMENTWISE = ("Adafactor",)
# Element-wise, with a remark printed under the table.
REMARKS = {
    "GClip": "clips by the global norm of the new momentum: a reduction over all arrays before the "
    "update, so a second pass over the momentum",
    "FrozenAdam": "its frozen preconditioner (all ones here) is read, never written (without donation XLA "
    "still copies it to a new buffer: 8 floats moved, not 6)",
    "ACClip": "default weight_decay=1e-5 (decoupled), one more multiply-add",
    "Padam": "amsgrad=True by default: a third slot (the running maximum of v)",
    "keras Lion": "the parameter's update and the momentum's both read the old momentum and the gradient: "
    "unless XLA fuses them into one kernel, both arrays are read twice (7 floats, not 5), and "
    "the donated step also copies the momentum (the copies column)",
    "SSD": "no state: reads g and x, writes x, the 3 floats of sign descent (its P = |g| is read from the "
    "step's gradient, which the measurement callbacks keep only on the steps they measure)",
}
FLOOR = "fused Adam (floor)"
FUSED_MOMENTUM = "fused SGD(momentum)"
OVERHEAD = "no-op"


def accelerator():
    return jax.default_backend() != "cpu"


def update_factories():
    """Name → optimizer factory: Keras's built-ins, then ours with their defaults (and one learning rate)."""
    lr = FLAGS.learning_rate
    factories = {
        "keras Adam": lambda: keras.optimizers.Adam(lr),
        "keras SGD(momentum)": lambda: keras.optimizers.SGD(lr, momentum=0.9),
        "keras RMSprop": lambda: keras.optimizers.RMSprop(lr),
        "keras Adagrad": lambda: keras.optimizers.Adagrad(lr),
        "keras Lion": lambda: keras.optimizers.Lion(lr),
    }
    for name in tf_adaptive.__all__:
        cls = getattr(tf_adaptive, name)
        if isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer) and name not in NOT_ELEMENTWISE:
            factories[name] = lambda cls=cls: cls(lr)
    return factories


# --- bytes moved, read off the jaxpr ---------------------------------------------------------------------


def traffic(fn, state, consts):
    """Bytes moved by one call of `fn(*state, *consts)`, which returns a new `state` (same structure).

    Every input that some operation uses is read once; every entry of the new state is written once,
    unless it is the same entry of the old state passed through unchanged (with donation that costs
    nothing; a slot overwritten with the gradient does count as written)."""
    jaxpr = jax.make_jaxpr(fn)(*state, *consts).jaxpr
    ins, outs = jaxpr.invars, jaxpr.outvars
    used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
    # An input returned as another entry of the state is read by a copy.
    used.update(id(v) for j, v in enumerate(outs) if not (j < len(ins) and ins[j] is v))
    read = sum(_nbytes(v) for v in ins if id(v) in used)
    written = sum(_nbytes(v) for j, v in enumerate(outs) if not _is_literal(v) and not (j < len(ins) and ins[j] is v))
    return read + written


def _is_literal(var):
    return type(var).__name__ == "Literal"


def _nbytes(var):
    aval = var.aval
    return int(np.prod(aval.shape, dtype=np.int64)) * np.dtype(aval.dtype).itemsize


def big_copies(compiled):
    """Number of copy instructions of non-scalar arrays in the entry computation of the compiled HLO."""
    try:
        text = compiled.as_text()
    except Exception:  # some runtimes do not expose the text
        return None
    entry = text[text.find("\nENTRY") :]
    entry = entry[: entry.find("\n}")]
    return len(re.findall(r"= \w+\[\d[\d,]*\][^ ]* copy(?:-start)?\(", entry))


# --- timing --------------------------------------------------------------------------------------------


class Stepper:
    """A state threaded through jitted steps; one compiled function per mode (donation or not)."""

    def __init__(self, state, modes, consts):
        self.state = state
        self.consts = consts
        self.modes = {}
        self.copies = {}
        for mode, (fn, donate, wrap) in modes.items():
            # keep_unused: a donated slot that the update overwrites without reading keeps its own buffer
            # (otherwise JAX drops the input and the pairing of donated buffers to outputs shifts).
            compiled = (
                jax.jit(fn, donate_argnums=donate, keep_unused=bool(donate)).lower(*self.state, *consts).compile()
            )
            self.modes[mode] = (compiled, wrap)
            self.copies[mode] = big_copies(compiled)

    def run(self, mode, steps):
        compiled, wrap = self.modes[mode]
        state = self.state
        for _ in range(steps):
            state = wrap(compiled(*state, *self.consts))
        jax.block_until_ready(state)
        self.state = state


def time_round_robin(steppers, rng, steps, repeats):
    """{(row, mode): seconds per step}, the minimum over repeats; rows and modes shuffled each repeat."""
    keys = [(name, mode) for name, stepper in steppers.items() for mode in stepper.modes]
    for name, mode in keys:  # warm up
        steppers[name].run(mode, 2)
    best = {key: float("inf") for key in keys}
    for _ in range(repeats):
        for index in rng.permutation(len(keys)):
            name, mode = keys[index]
            start = time.perf_counter()
            steppers[name].run(mode, steps)
            best[name, mode] = min(best[name, mode], (time.perf_counter() - start) / steps)
    return best


def identity(outputs):
    return outputs


def swap(outputs):
    return outputs[1], outputs[0]


# --- the update cases ----------------------------------------------------------------------------------


def fused_adam(p, m, v, t, g):
    """Adam over lists of arrays, written by hand: one jitted function, bias correction included."""
    b1, b2, eps, lr = 0.9, 0.999, 1e-7, FLAGS.learning_rate
    t = t + 1
    tf32 = t.astype(jnp.float32)
    alpha = lr * jnp.sqrt(1 - b2**tf32) / (1 - b1**tf32)
    new_m = [mi + (1 - b1) * (gi - mi) for mi, gi in zip(m, g)]
    new_v = [vi + (1 - b2) * (gi * gi - vi) for vi, gi in zip(v, g)]
    new_p = [pi - alpha * mi / (jnp.sqrt(vi) + eps) for pi, mi, vi in zip(p, new_m, new_v)]
    return new_p, new_m, new_v, t


def no_op(p, m, v, t, g):
    del g
    return p, m, v, t + 1


def fused_momentum(p, m, g):
    """SGD with momentum 0.9 (Keras's form) over lists of arrays, written by hand."""
    lr = FLAGS.learning_rate
    new_m = [0.9 * mi - lr * gi for mi, gi in zip(m, g)]
    new_p = [pi + mi for pi, mi in zip(p, new_m)]
    return new_p, new_m


def optimizer_modes(optimizer, pairing):
    def in_input_order(optimizer_variables, grads, trainable_variables):
        new_trainable, new_optimizer = optimizer.stateless_apply(optimizer_variables, grads, trainable_variables)
        return new_optimizer, new_trainable

    # The Stepper's state is (optimizer_variables, trainable_variables); the gradients come last.
    def step(optimizer_variables, trainable_variables, grads):
        return in_input_order(optimizer_variables, grads, trainable_variables)

    def own_order(optimizer_variables, trainable_variables, grads):
        return optimizer.stateless_apply(optimizer_variables, grads, trainable_variables)

    modes = {"plain": (step, (), identity), "donated": (step, (0, 1), identity)}
    if pairing:
        modes["donated, own order"] = (own_order, (0, 1), swap)
    return modes, step


def update_case(label, shapes, rng):
    print(
        f"### update, {label}: {len(shapes)} arrays of {shapes[0]} float32 "
        f"({sum(int(np.prod(s)) for s in shapes) / 1e6:.1f} M parameters)\n"
    )
    np_rng = np.random.default_rng(FLAGS.seed)
    params = [np_rng.normal(scale=0.05, size=s).astype("float32") for s in shapes]
    grads = [jnp.asarray(np_rng.normal(scale=1e-2, size=s).astype("float32")) for s in shapes]
    n = sum(int(np.prod(s)) for s in shapes)
    steps, repeats = (3, 4) if FLAGS.quick else (FLAGS.steps, FLAGS.repeats)

    steppers, bytes_moved, slots = {}, {}, {}
    # The floors.
    p = [jnp.asarray(x) for x in params]
    zeros = [jnp.zeros(s, "float32") for s in shapes]
    adam_state = (p, zeros, [jnp.zeros(s, "float32") for s in shapes], jnp.zeros((), "int32"))
    steppers[FLOOR] = Stepper(
        adam_state, {"plain": (fused_adam, (), identity), "donated": (fused_adam, (0, 1, 2), identity)}, (grads,)
    )
    bytes_moved[FLOOR] = traffic(fused_adam, adam_state, (grads,))
    slots[FLOOR] = 2
    momentum_state = ([jnp.asarray(x) for x in params], [jnp.zeros(s, "float32") for s in shapes])
    steppers[FUSED_MOMENTUM] = Stepper(
        momentum_state,
        {"plain": (fused_momentum, (), identity), "donated": (fused_momentum, (0, 1), identity)},
        (grads,),
    )
    bytes_moved[FUSED_MOMENTUM] = traffic(fused_momentum, momentum_state, (grads,))
    slots[FUSED_MOMENTUM] = 1
    # The cost of calling a jitted function on this many arrays: a donated no-op on an Adam-sized state.
    overhead_state = ([jnp.zeros(s, "float32") for s in shapes] for _ in range(3))
    overhead = Stepper(
        (*overhead_state, jnp.zeros((), "int32")), {"donated": (no_op, (0, 1, 2, 3), identity)}, (grads,)
    )

    factories = update_factories()
    if FLAGS.optimizers:
        unknown = set(FLAGS.optimizers) - set(factories)
        if unknown:
            raise app.UsageError(f"unknown --optimizers {sorted(unknown)}; choose from {list(factories)}")
        factories = {k: f for k, f in factories.items() if k in FLAGS.optimizers}
    compile_start = time.perf_counter()
    for name, factory in factories.items():
        variables = [keras.Variable(x) for x in params]
        optimizer = factory()
        optimizer.build(variables)
        big = [v for v in optimizer.variables if len(v.shape) > 0]
        slots[name] = len(big) / len(variables)
        # The variables' own buffers, not copies (the large case holds every row's state on the device at
        # once); donation deletes them, and nothing reads the Keras variables afterwards.
        state = ([v.value for v in optimizer.variables], [v.value for v in variables])
        modes, step = optimizer_modes(optimizer, name in FLAGS.pairing_optimizers)
        bytes_moved[name] = traffic(step, state, (grads,))
        steppers[name] = Stepper(state, modes, (grads,))
    compile_seconds = time.perf_counter() - compile_start
    times = time_round_robin({**steppers, OVERHEAD: overhead}, rng, steps, repeats)

    def better(name):
        return min(times[name, "plain"], times[name, "donated"])

    floor_bandwidth = bytes_moved[FLOOR] / better(FLOOR)
    header = (
        "| optimizer | slots | floats/param | ms, no donation | ms, donated | donated ÷ no donation "
        "| array copies, donated | GB/s | × fused-Adam floor |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in steppers:
        best = better(name)
        ratio = best / (bytes_moved[name] / floor_bandwidth)
        print(
            f"| {name} | {slots[name]:g} | {bytes_moved[name] / (4 * n):.2f} "
            f"| {1e3 * times[name, 'plain']:.3f} | {1e3 * times[name, 'donated']:.3f} "
            f"| {times[name, 'donated'] / times[name, 'plain']:.2f} | {steppers[name].copies['donated']} "
            f"| {bytes_moved[name] / best / 1e9:.1f} | {ratio:.2f} |"
        )
    print()
    print(
        f"Floor: {floor_bandwidth / 1e9:.1f} GB/s ({bytes_moved[FLOOR] / (4 * n):.0f} floats per parameter "
        f"in {1e3 * better(FLOOR):.3f} ms). Ratio = the better of the two times ÷ (the row's bytes ÷ the "
        f"floor's GB/s). Minimum of {repeats} round-robin timings of {steps} steps; "
        f"compiling the optimizer rows took {compile_seconds:.0f} s. Call overhead: a jitted no-op on "
        f"an Adam-sized state of these arrays (donated, passed through) takes "
        f"{1e3 * times[OVERHEAD, 'donated']:.3f} ms per step."
    )
    for name, remark in REMARKS.items():
        if name in steppers:
            print(f"- {name}: {remark}.")
    print()

    pairing = [name for name in steppers if "donated, own order" in steppers[name].modes]
    if pairing:
        print(f"### donation and output order, {label}\n")
        print(
            "| optimizer | ms, no donation | ms, donated, outputs in input order | ms, donated, "
            "stateless_apply's order | array copies in HLO: input order | stateless_apply's order |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for name in pairing:
            s = steppers[name]
            print(
                f"| {name} | {1e3 * times[name, 'plain']:.3f} | {1e3 * times[name, 'donated']:.3f} "
                f"| {1e3 * times[name, 'donated, own order']:.3f} | {s.copies['donated']} "
                f"| {s.copies['donated, own order']} |"
            )
        print()
    return times


# --- the train step ------------------------------------------------------------------------------------


class PositionEmbedding(keras.layers.Layer):
    def build(self, input_shape):
        self.table = self.add_weight(shape=input_shape[1:], initializer="glorot_uniform", name="table")

    def call(self, x):
        return x + self.table


def build_transformer(width, seq_len):
    # Unseeded weights: keras.utils.set_random_seed would import TensorFlow where it is installed, and
    # the values do not change the timings.
    tokens = keras.Input((seq_len,), dtype="int32")
    x = keras.layers.Embedding(FLAGS.vocab, width)(tokens)
    x = PositionEmbedding()(x)
    for _ in range(FLAGS.blocks):
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.MultiHeadAttention(FLAGS.heads, width // FLAGS.heads)(h, h, use_causal_mask=True)
        x = keras.layers.Add()([x, h])
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.Dense(4 * width, activation="gelu")(h)
        h = keras.layers.Dense(width)(h)
        x = keras.layers.Add()([x, h])
    x = keras.layers.LayerNormalization()(x)
    return keras.Model(tokens, keras.layers.Dense(FLAGS.vocab)(x))


def train_case(rng):
    gpu = accelerator()
    width = FLAGS.width or (512 if gpu else 128)
    seq_len = FLAGS.seq_len or (256 if gpu else 64)
    batch = FLAGS.batch_size or (32 if gpu else 16)
    steps, repeats = (3, 4) if FLAGS.quick else (FLAGS.steps, FLAGS.repeats)
    np_rng = np.random.default_rng(FLAGS.seed)
    x = jnp.asarray(np_rng.integers(0, FLAGS.vocab, size=(batch, seq_len)).astype("int32"))
    y = jnp.asarray(np_rng.integers(0, FLAGS.vocab, size=(batch, seq_len)).astype("int32"))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    factories = {
        "keras Adam": lambda: keras.optimizers.Adam(FLAGS.learning_rate),
        "Adam": lambda: tf_adaptive.Adam(FLAGS.learning_rate),
    }
    steppers = {}
    parameters = None
    for name, factory in factories.items():
        model = build_transformer(width, seq_len)
        parameters = model.count_params()
        optimizer = factory()
        optimizer.build(model.trainable_variables)

        def forward_backward(trainable, non_trainable, x, y, model=model):
            def loss_of(trainable):
                logits, non_trainable_out = model.stateless_call(trainable, non_trainable, x, training=True)
                return loss_fn(y, logits), non_trainable_out

            return jax.value_and_grad(loss_of, has_aux=True)(trainable)

        # Outputs in the order of the inputs (see the module docstring); the loss is dropped: the
        # updated variables depend on it anyway.
        def train_step(
            trainable, non_trainable, optimizer_variables, x, y, optimizer=optimizer, forward_backward=forward_backward
        ):
            (_, non_trainable), grads = forward_backward(trainable, non_trainable, x, y)
            trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, grads, trainable)
            return trainable, non_trainable, optimizer_variables

        # The same with the updated optimizer variables before the trainable ones.
        def swapped(trainable, non_trainable, optimizer_variables, x, y, train_step=train_step):
            trainable, non_trainable, optimizer_variables = train_step(
                trainable, non_trainable, optimizer_variables, x, y
            )
            return optimizer_variables, non_trainable, trainable

        def unswap(outputs):
            return outputs[2], outputs[1], outputs[0]

        state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables],
        )
        modes = {
            "plain": (train_step, (), identity),
            "donated": (train_step, (0, 1, 2), identity),
            "donated, swapped": (swapped, (0, 1, 2), unswap),
        }
        steppers[name] = Stepper(state, modes, (x, y))
    times = time_round_robin(steppers, rng, steps, repeats)
    print(
        f"### train step: causal transformer, width {width}, {FLAGS.blocks} blocks, {FLAGS.heads} heads, "
        f"{parameters:,} parameters, batch {batch} × {seq_len} tokens\n"
    )
    print(
        "| optimizer | ms, no donation | ms, donated | ms, donated, optimizer outputs first "
        "| array copies in HLO: donated | swapped |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, s in steppers.items():
        print(
            f"| {name} | {1e3 * times[name, 'plain']:.2f} | {1e3 * times[name, 'donated']:.2f} "
            f"| {1e3 * times[name, 'donated, swapped']:.2f} | {s.copies['donated']} "
            f"| {s.copies['donated, swapped']} |"
        )
    print(
        f'\nMinimum of {repeats} round-robin timings of {steps} steps. "Optimizer outputs first" returns '
        f"(optimizer variables, non-trainable, trainable) for inputs (trainable, non-trainable, optimizer "
        f"variables), all donated.\n"
    )


def main(argv):
    del argv
    if keras.backend.backend() != "jax":
        raise app.UsageError(f"run with KERAS_BACKEND=jax (Keras's backend is {keras.backend.backend()!r})")
    unknown = set(FLAGS.cases) - {"large", "small", "train"}
    if unknown:
        raise app.UsageError(f"unknown --cases {sorted(unknown)}; choose from large, small, train")
    device = jax.devices()[0]
    print(
        f"Device: {device.device_kind} ({device.platform}, {jax.device_count()} device(s)); "
        f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, Keras {keras.__version__}, "
        f"tf_adaptive {tf_adaptive.__version__}; TensorFlow imported: {sys.modules.get('tensorflow') is not None}\n"
    )
    rng = np.random.default_rng(FLAGS.seed)
    start = time.perf_counter()
    if "large" in FLAGS.cases:
        side = FLAGS.large_side or (4096 if accelerator() else 1024)
        update_case("large arrays", [(side, side)] * FLAGS.large_count, rng)
    if "small" in FLAGS.cases:
        update_case("many small arrays", [(FLAGS.small_side, FLAGS.small_side)] * FLAGS.small_count, rng)
    if "train" in FLAGS.cases:
        train_case(rng)
    print(f"Total time: {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    app.run(main)
