"""What the example scripts share: embedded data, models, the XLA training loop, output files, the verdict table.

Default data is embedded and real, so nothing is downloaded:

* images: scikit-learn's bundled `load_digits` (1,797 8×8 handwritten digits);
* text: the English documentation that every Python ships in
  `pydoc_data.topics`, read as UTF-8 bytes for byte-level language modelling
  (about 466 kB; the exact text depends on the Python version).

`--dataset=mnist|cifar10` loads through `keras.datasets` (needs a network the
first time), and `--data_dir` points at a local `<name>.npz` with arrays
`x_train, y_train, x_test, y_test` instead.
"""

import json
import math
import os

import numpy as np

IMAGE_DATASETS = ("digits", "mnist", "cifar10")


def _standardized(x):
    """Each column shifted to mean 0 and scaled to standard deviation 1 (constant columns become 0).

    Computed in `x`'s own dtype.
    """
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


def digits(num_examples=None, seed=0):
    """Standardized digits features (float32, 64 columns) and labels (int32).

    `num_examples` takes a class-stratified subset of that size, shuffled with `seed`.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype("float64") / 16.0
    x = _standardized(x).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    if num_examples is not None and num_examples < len(x):
        # Round-robin over the classes keeps every class in the subset.
        by_class = [order[y[order] == c] for c in range(10)]
        interleaved = [index for group in zip(*by_class) for index in group]
        order = np.array(interleaved[:num_examples])
    return x[order], y[order]


def image_data(dataset="digits", data_dir=None, num_examples=None, seed=0):
    """Flattened, standardized images and labels: `(x, y)` for training.

    `dataset` is one of `IMAGE_DATASETS`; with `data_dir`, `<data_dir>/<dataset>.npz`
    (arrays `x_train`, `y_train`) is read instead of `keras.datasets`.
    """
    if dataset == "digits" and data_dir is None:
        return digits(num_examples, seed)
    if data_dir is not None:
        with np.load(os.path.join(data_dir, f"{dataset}.npz")) as arrays:
            x, y = arrays["x_train"], arrays["y_train"]
    else:
        import keras

        (x, y), _ = getattr(keras.datasets, dataset).load_data()
    x = _standardized(x.reshape(len(x), -1).astype("float32"))
    y = np.asarray(y).reshape(-1).astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))[:num_examples]
    return x[order], y[order]


def define_image_flags(num_examples=None, flag_values=None):
    """Defines `--dataset`, `--data_dir` and `--num_examples` for `image_data`.

    `num_examples` is the default subset size (None: every example);
    `flag_values` defaults to absl's global `FLAGS`.
    """
    from absl import flags

    values = flags.FLAGS if flag_values is None else flag_values
    flags.DEFINE_enum(
        "dataset",
        "digits",
        list(IMAGE_DATASETS),
        "Image data set: the bundled digits, or mnist/cifar10 through keras.datasets.",
        flag_values=values,
    )
    flags.DEFINE_string(
        "data_dir", None, "Folder with <dataset>.npz (x_train, y_train) to read instead.", flag_values=values
    )
    flags.DEFINE_integer(
        "num_examples", num_examples, "Training examples (default: all of them).", lower_bound=10, flag_values=values
    )


def define_text_flags(flag_values=None):
    """Defines `--data_dir` for `text_corpus` (default: the embedded text).

    `flag_values` defaults to absl's global `FLAGS`.
    """
    from absl import flags

    flags.DEFINE_string(
        "data_dir",
        None,
        "Optional folder with corpus.txt to use instead of the embedded text.",
        flag_values=flags.FLAGS if flag_values is None else flag_values,
    )


def text_corpus(data_dir=None):
    """The corpus as a uint8 array of UTF-8 bytes (vocabulary 256).

    By default the pydoc topics, sorted by name and joined by blank lines;
    with `data_dir`, the bytes of `<data_dir>/corpus.txt`.
    """
    if data_dir is not None:
        with open(os.path.join(data_dir, "corpus.txt"), "rb") as handle:
            return np.frombuffer(handle.read(), dtype=np.uint8)
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def text_windows(tokens, sequence_length, num_windows=None, seed=0, validation_fraction=0.1):
    """Next-byte prediction windows: `((x_train, y_train), (x_val, y_val))`.

    The corpus is split contiguously (the last `validation_fraction` is held
    out), then cut into non-overlapping windows of `sequence_length + 1`
    bytes; inputs are a window's first `sequence_length` bytes and targets
    the same shifted by one. `num_windows` caps the training windows (a random
    subset drawn with `seed`); the validation windows are capped at a quarter
    of that.
    """
    tokens = np.asarray(tokens, dtype=np.int32)
    split = int(len(tokens) * (1.0 - validation_fraction))

    def windows(part, cap):
        count = (len(part) - 1) // sequence_length
        starts = np.arange(count) * sequence_length
        if cap is not None and cap < count:
            starts = np.sort(np.random.default_rng(seed).choice(starts, cap, replace=False))
        index = starts[:, None] + np.arange(sequence_length + 1)[None, :]
        chunk = part[index]
        return chunk[:, :-1], chunk[:, 1:]

    validation_cap = None if num_windows is None else max(1, num_windows // 4)
    return windows(tokens[:split], num_windows), windows(tokens[split:], validation_cap)


def mlp(num_features, hidden_units, seed, activation="relu", num_classes=10):
    """A classifier MLP: two hidden `activation` layers of `hidden_units`, then `num_classes` logits.

    Keras's default initializers (Glorot uniform kernels, zero biases), drawn
    after seeding Keras with `seed`: the same arguments give the same initial
    weights. The layers are named `hidden_1`, `hidden_2` and `output`.
    """
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((num_features,)),
            keras.layers.Dense(hidden_units, activation=activation, name="hidden_1"),
            keras.layers.Dense(hidden_units, activation=activation, name="hidden_2"),
            keras.layers.Dense(num_classes, name="output"),
        ]
    )


def tanh_network(num_features, num_classes, hidden_layers, hidden_units, seed):
    """Cohen et al.'s (2022, App. G.1) fully-connected network: tanh, weights of variance 1/fan_in, zero biases.

    `hidden_layers` tanh layers of `hidden_units`, then `num_classes` linear
    outputs; the weights are drawn after seeding Keras with `seed`.
    """
    import keras

    keras.utils.set_random_seed(seed)

    def initializer():
        # One instance per layer: an unseeded initializer shared by layers of one shape gives them
        # all the same kernel.
        return keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal")

    layers = [keras.Input((num_features,))]
    layers += [
        keras.layers.Dense(hidden_units, activation="tanh", kernel_initializer=initializer())
        for _ in range(hidden_layers)
    ]
    layers.append(keras.layers.Dense(num_classes, kernel_initializer=initializer()))
    return keras.Sequential(layers)


def byte_transformer(sequence_length, width, num_blocks, num_heads, activation, attention=True, vector_inputs=False):
    """A causal post-LayerNorm transformer over bytes (Vaswani et al. 2017, decoder only).

    Byte embedding (256) plus a learned position embedding, then `num_blocks`
    blocks of LN(h + causal self-attention) and LN(h + Dense(width) ∘
    Dense(4·width, `activation`)), then logits over the 256 bytes.
    `attention=False` drops the self-attention (a per-position MLP: Zhang et
    al.'s attention-free control); `vector_inputs=True` takes float inputs of
    shape [sequence_length, width] in place of the byte embedding. Seed Keras
    first for reproducible weights.
    """
    import keras

    if vector_inputs:
        inputs = keras.Input((sequence_length, width))
        h = inputs
    else:
        inputs = keras.Input((sequence_length,), dtype="int32")
        h = keras.layers.Embedding(256, width)(inputs)
    h = h + keras.layers.Embedding(sequence_length, width)(keras.ops.arange(sequence_length))
    for _ in range(num_blocks):
        if attention:
            attended = keras.layers.MultiHeadAttention(num_heads, width // num_heads)(h, h, use_causal_mask=True)
            h = keras.layers.LayerNormalization()(h + attended)
        hidden = keras.layers.Dense(4 * width, activation=activation)(h)
        h = keras.layers.LayerNormalization()(h + keras.layers.Dense(width)(hidden))
    return keras.Model(inputs, keras.layers.Dense(256)(h))


def reset_optimizer(optimizer, learning_rate=None):
    """Zeroes a built optimizer's state (step count included) and sets its learning rate (None: leaves it).

    A reset optimizer is a fresh one, so one optimizer object, and so one traced
    `xla_training_loop`, serves every learning rate of a grid. An optimizer on a
    schedule keeps it (pass None); a schedule whose peak is a variable is reset
    by assigning that.
    """
    import keras
    import tensorflow as tf

    # Keras keeps a float learning rate as one of `optimizer.variables`: it is read before the zeroing and
    # written back, unless a new one is given (a schedule holds no variable there and needs nothing).
    schedule = isinstance(getattr(optimizer, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule)
    kept = None if schedule else float(optimizer.learning_rate)
    for variable in optimizer.variables:
        variable.assign(tf.zeros_like(variable))
    if learning_rate is not None:
        optimizer.learning_rate = float(learning_rate)
    elif kept is not None:
        optimizer.learning_rate = kept


def xla_training_loop(model, optimizer, loss):
    """One XLA-compiled function that takes many optimizer steps: `train(x_batches, y_batches)`.

    Step k computes ℓ_k = `loss`(y_batches[k], model(x_batches[k], training=True)),
    its gradient by `tf.GradientTape`, and applies it with `optimizer`, for every k
    of the leading axis, inside one `tf.function(jit_compile=True)`; `train`
    returns the float32 losses ℓ_k, each taken before its own step. Builds
    `optimizer` on the model's trainable variables; reuse `train` across a
    learning-rate grid with `reset_optimizer`. Needs the TensorFlow backend.
    """
    import tensorflow as tf

    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def train(x_batches, y_batches):
        losses = tf.TensorArray(tf.float32, tf.shape(x_batches)[0])
        for step in tf.range(tf.shape(x_batches)[0]):
            with tf.GradientTape() as tape:
                value = loss(y_batches[step], model(x_batches[step], training=True))
            gradients = tape.gradient(value, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            losses = losses.write(step, value)
        return losses.stack()

    return train


def accuracy(labels, logits):
    """Fraction of predictions whose largest logit is at the integer label (TensorFlow ops, compiles with XLA)."""
    import tensorflow as tf

    return tf.reduce_mean(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == labels, tf.float32))


def output_path(output_dir, name):
    """`output_dir/name`, creating the folder."""
    os.makedirs(output_dir, exist_ok=True)
    return os.path.join(output_dir, name)


def _plain(value):
    """JSON-ready copy: NumPy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(output_dir, name, results):
    """Writes `results` (nested dicts/lists of numbers and strings) as JSON; returns the path."""
    path = output_path(output_dir, name)
    with open(path, "w") as handle:
        json.dump(_plain(results), handle, indent=2, sort_keys=True)
    print(f"wrote {path}")
    return path


def save_figure(figure, output_dir, name):
    """Saves a matplotlib figure as PNG (100 dpi) and closes it; returns the path."""
    import matplotlib.pyplot as plt

    path = output_path(output_dir, name)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    print(f"wrote {path}")
    return path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def verdict(claim, measured, agrees):
    """One row of the closing table: the paper's claim, our number, and whether they agree."""
    return {"claim": claim, "measured": measured, "verdict": "agree" if agrees else "disagree"}


def print_verdicts(rows, title="Paper claim vs this run"):
    """Prints the verdict rows as an aligned table."""
    headers = ("paper claim", "measured", "verdict")
    cells = [(row["claim"], row["measured"], row["verdict"]) for row in rows]
    widths = [max(len(headers[i]), *(len(c[i]) for c in cells)) for i in range(3)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for cell in cells:
        print("  ".join(c.ljust(w) for c, w in zip(cell, widths)))


def gated_verdict(claim, label_a, a, label_b, b, relation, digits=2):
    """A verdict row for a claim about the means over seeds of `a` and `b`, gated on the seed-to-seed spread.

    The spread is the larger of the two ranges over seeds (max − min; a
    single number, such as a fixed threshold, has range 0). `relation`:

    * "<" (mean a < mean b) or ">" (mean a > mean b): "agree" or "disagree"
      only when the gap between the means exceeds the spread; otherwise
      "no verdict: gap X within spread Y".
    * "≈" (the means match): "agree" when the gap is within the spread, the
      two being indistinguishable at this noise; "disagree" when it exceeds it.
    * "≲" (a is no worse, i.e. no larger, than b): "agree" unless mean a
      exceeds mean b by more than the spread.

    With one seed the spread is 0 and any gap decides. A NaN anywhere gives
    "no verdict". The row also carries `gap` (for "<" and ">" signed, > 0 when
    the claim holds; for "≈" the absolute difference; for "≲" mean a − mean b)
    and `spread`. `digits`: decimals of the numbers in the row's text.
    """
    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    spread = float(max(np.ptp(a), np.ptp(b)))
    difference = float(np.mean(a) - np.mean(b))
    gap = {"<": -difference, ">": difference, "≈": abs(difference), "≲": difference}[relation]

    def values(label, x):
        seeds = "" if len(x) == 1 else " (" + ", ".join(f"{v:.{digits}f}" for v in x) + ")"
        return f"{label} {np.mean(x):.{digits}f}{seeds}"

    measured = f"{values(label_a, a)} vs {values(label_b, b)}; "
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return dict(
            claim=claim,
            measured=measured + "no verdict: not measured at every seed (NaN)",
            verdict="no verdict",
            gap=gap,
            spread=spread,
        )
    if relation in ("<", ">"):
        if abs(gap) > spread:
            row = verdict(claim, measured + f"gap {abs(gap):.{digits}f} > spread {spread:.{digits}f}", gap > 0)
        else:
            row = dict(
                claim=claim,
                measured=measured + f"no verdict: gap {abs(gap):.{digits}f} within spread {spread:.{digits}f}",
                verdict="no verdict",
            )
    else:
        within = gap <= spread
        text = (
            f"gap {gap:.{digits}f} within spread {spread:.{digits}f}"
            if within
            else f"gap {gap:.{digits}f} > spread {spread:.{digits}f}"
        )
        row = verdict(claim, measured + text, within)
    return dict(row, gap=gap, spread=spread)
