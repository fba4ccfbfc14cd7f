r"""Every architecture the installed KerasHub and keras.applications export, through every instrument.

The catalog (`tests/analysis_tools/zoo_catalog.py`) builds each backbone and
task class of KerasHub and each keras.applications constructor small, from
its constructor arguments, with random weights; an architecture that cannot
be built small is listed with the reason. For each model, in a process of its
own, the sweep runs:

* **in `fit`**: two steps of `tf_adaptive.Adam` with `SharpnessCallback`
  (λ1(H), λ1(P⁻¹H), both traces, the density, the last block's λ1),
  `GradientNoiseCallback` and `UpdateDistributionCallback` together; every
  logged value must be finite;
* **out of `fit`**: `sharpness`, `preconditioned_sharpness`, `hessian_trace`
  and `spectral_density` on the callback's operator, and `gradient_noise`;
  λ1 must agree with the callback's to 1 %;
* **the finite-difference check** in float64: the product H v along the top
  Ritz vector v of H from Lanczos (tolerance 1e-8, at most 80 steps) against
  the central difference of gradients, (g(θ+εv) − g(θ−εv)) / 2ε, best over
  ε ∈ {1e-2, 1e-3, 1e-4, 1e-6, …, 1e-10}; and the Ritz residual ‖H v − λv‖ / |λ|,
  which says how far those 80 steps took the eigenpair (large networks stop
  short of 1e-8). Where XLA cannot compile the float64 product (max pooling:
  TensorFlow's XLA bridge has MaxPoolGradGrad for float32 only, and the
  library says so), the check runs uncompiled and the row notes it. Where the
  forward pass stops gradients on weight-dependent values (D-FINE detaches its
  refined boxes; `HessianOperator.stopped_gradients`), the product is the
  Hessian of the loss with those values held, which finite differences of the
  gradient do not see: the check then lets the stops through
  (`tf.stop_gradient` made the identity) and the row notes it;
* **per-block discovery** (`analysis_tools.curvature.model_blocks`): how many blocks;
* its wall time and peak resident memory.

Products are XLA-compiled (the default), as a user gets them. A model whose
process passes ``--memory_limit`` (16 GB) runs again with every instrument
uncompiled (``jit_compile=False``), and its row says so: XLA's compilation of
the second-order programs of a deep network can take more memory than the
machine has (DenseNet121's Hessian-vector product: 8.2 GB and 126 s to
compile; uncompiled, 2.5 GB and the same 0.2 s a product). A row is ✓
when everything ran and agreed and H v passes to 2e-4, and
otherwise names the step that failed with its error's first line.

    python benchmarks/zoo_sweep.py                                 # everything; writes docs/ZOO_SWEEP.md
    python benchmarks/zoo_sweep.py --models=keras_hub.DeiTImageClassifier,applications.DenseNet121
    python benchmarks/zoo_sweep.py --list                          # the catalog's names
    python benchmarks/zoo_sweep.py --shard=0/2 & python benchmarks/zoo_sweep.py --shard=1/2   # two processes

The whole catalog takes hours (30 s to 10 min a model on 2 cores): a release runs it in shards.
The table is written from the results file, so the last shard to finish writes all rows. Run it from
a checkout that nobody edits meanwhile: AutoGraph reads the source of what it converts when a
function is traced, and a file changed under a running model gives errors that are not the model's
(`tf__weight() takes 3 positional arguments but 6 were given`).
"""

import json
import os
import re
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Catalog names to sweep (default: all).")
flags.DEFINE_bool("list", False, "Print the catalog's names and stop.")
flags.DEFINE_string("output", os.path.join(ROOT, "docs", "ZOO_SWEEP.md"), "Where the table goes.")
flags.DEFINE_string(
    "results",
    os.path.join(ROOT, "benchmarks", "zoo_sweep.jsonl"),
    "One JSON line per model; models already there are not run again (delete it to rerun).",
)
flags.DEFINE_integer("timeout", 900, "Seconds a model may take.")
flags.DEFINE_string(
    "shard",
    None,
    "k/n: sweep only every n-th model of the catalog, from the k-th (k = 0 … n-1), "
    "so that n processes (or machines) share the sweep; they may append to one results file.",
)
flags.DEFINE_string("child", None, "Internal: sweep this one model and print one result line.")
flags.DEFINE_bool(
    "uncompiled", False, "Internal: run the instruments without XLA (after a compiled run passed --memory_limit)."
)
flags.DEFINE_float(
    "memory_limit",
    16.0,
    "GB of resident memory a model's process may hold; past it the process "
    "stops, and the model runs again with the instruments uncompiled.",
)

FD_TOLERANCE = 2e-4
# What the float64 check's Lanczos basis may hold.
BASIS_BYTES = 2 * 2**30
# Kinks (ReLU, hard-swish, max pooling) need the small steps: MobileNetV3Small's H v agrees to 0.18 at
# ε = 1e-4 and to 1.4e-8 at 1e-7; DenseNet169's, along a random direction of its first convolution's
# kernel, to 0.84–4.3 for ε = 1e-4 … 1e-7 and to 1.0e-7 at 1e-8 (its λ1 ≈ 9e8 keeps the central
# difference above rounding down to ε = 1e-10).
EPSILONS = (1e-2, 1e-3, 1e-4, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
# Ops that move or cast values without computing: not counted as computing in float32.
_PLUMBING = {
    "Cast",
    "Const",
    "Identity",
    "IdentityN",
    "Placeholder",
    "ReadVariableOp",
    "StopGradient",
    "PartitionedCall",
    "StatefulPartitionedCall",
    "NoOp",
}

LIMITATIONS = """## Limitations that TensorFlow and KerasHub place

* **XLA has no float64 second derivative of max pooling.** TensorFlow's XLA bridge
  registers `MaxPoolGradGrad` for float32 only. A float64 model with max pooling gets a `ValueError`
  from the library that names the op and says to pass `jit_compile=False`; the sweep's float64 check
  then runs uncompiled and the row says so. Plain TensorFlow:

  ```python
  import tensorflow as tf

  x = tf.random.normal([1, 4, 4, 1], dtype=tf.float64)


  @tf.function(jit_compile=True)
  def f(x):
      with tf.GradientTape() as outer:
          outer.watch(x)
          with tf.GradientTape() as inner:
              inner.watch(x)
              y = tf.reduce_sum(tf.nn.max_pool2d(x, 2, 2, "VALID") ** 2)
          g = inner.gradient(y, x)
          s = tf.reduce_sum(g)
      return outer.gradient(s, x)


  f(x)  # InvalidArgumentError: ... MaxPoolGradGrad ... T=DT_DOUBLE ... XLA_CPU_JIT
  ```

* **Bilinear and bicubic resizing compute in float32.** `ResizeBilinear` and `ResizeBicubic` return
  float32 whatever the input's dtype (Keras casts the result back), so a float64 model that upsamples
  this way is float32 there: `tf.raw_ops.ResizeBilinear(images=tf.zeros([1, 2, 2, 1], tf.float64),
  size=[4, 4]).dtype` is `tf.float32`. Central differences then meet float32 rounding at small steps
  and the network's kinks (ReLU, max pooling) at large ones, and no step is below both: DeepLabV3's
  H v agrees to 4.9e-4 (backbone) and 1.1e-3 (segmenter) at best, while its Hessian is symmetric to
  6e-9 and the product itself is exact; SegFormer's backbone to 1.7e-3 (the resize's second derivative
  is tested against central differences on smooth networks in `tests/analysis_tools/test_second_order.py`).
  These rows are
  "limited" and name the ops.

* **Some KerasHub models compute parts in float32 inside a float64 model, by design** (rotary
  embeddings, soft-capping: Gemma3n's float64 forward pass has `Cos`, `Sin`, `Pow`, `Einsum` and `Tanh`
  ops in float32; MobileNetV5 normalizes in float32). Each row lists the ops the sweep found computing
  in float32; the agreement is then about 1e-5 to 5e-3 instead of 1e-9, the worst where float32 meets
  kinks (MobileNetV5: 4.5e-3).
* **Some KerasHub models cannot be trained in float64** (Mixtral's sparse mixture-of-experts router
  casts its token mask to float32 in the training path): their rows say so, and have no float64
  check.
* **Some KerasHub models stop gradients on purpose** (D-FINE detaches its refined boxes between
  decoder layers). Every derivative is then that of the loss with the stopped values held, which is
  what `fit` follows; the library names the ops (`HessianOperator.stopped_gradients`, a warning), and
  the sweep checks the product with the stops let through (D-FINE's backbone: 6.1e-2 with them,
  4.8e-10 without).
* **XLA has no kernel for bicubic resizing at all** (`ResizeBicubic`, forward pass included): a model
  with it gets the library's `ValueError` naming the op, and runs with `jit_compile=False`.
* **Qwen3.5's gated delta rule unrolls a 64-step Python loop per layer** (its chunked recurrence):
  the second-order graph of the catalog's small model did not trace and compile within the sweep's
  15 minutes (two models at a time on 2 cores). Those rows are timeouts, not errors: the numbers are
  unchecked, and the cost is the limit.
* **XLA's compilation of a deep network's second-order programs can take more memory than the
  machine has.** DenseNet121's Hessian-vector product (float32, 4 images at 32 × 32) takes 126 s and
  8.2 GB to compile, and then runs in 0.21 s; uncompiled it runs in 0.22 s within 2.5 GB. Plain
  TensorFlow shows it: `tf.function(jit_compile=True)` of double backpropagation through
  `keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3), classes=4)`. ConvNeXtTiny and
  DenseNet169 pass 16 GB compiled and run uncompiled (their rows say so); DenseNet201's float64 check
  passes 16 GB uncompiled too (a 20 M-parameter float64 model and its Lanczos basis), so its instruments
  ran but its numbers are not checked against finite differences on this 24 GB machine.
"""


def _first_line(error):
    text = f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # TensorFlow prefixes errors raised while tracing with "in user code:" and a traceback.
    informative = [line for line in lines if re.match(r"^\w+(Error|Exception)\b", line)]
    return (informative[-1] if informative else lines[0])[:300]


# A child's exit status when it stopped itself at --memory_limit.
_OVER_MEMORY = 3


def _watch_memory(limit_gb):
    """Stops this process (exit status _OVER_MEMORY) once its resident memory passes `limit_gb`.

    Before the kernel's OOM killer does, which may pick another process than the sweep's.
    """
    import threading

    page = os.sysconf("SC_PAGE_SIZE")

    def watch():
        while True:
            with open("/proc/self/statm") as f:
                resident = int(f.read().split()[1]) * page / 2**30
            if resident > limit_gb:
                print(f"over the memory limit: {resident:.1f} GB resident", file=sys.stderr, flush=True)
                os._exit(_OVER_MEMORY)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def sweep_one(name, jit_compile=True):
    """One model's row, as a dict (run in a process of its own)."""
    import warnings

    import numpy as np
    import tensorflow as tf

    import analysis_tools
    import tf_adaptive
    from analysis_tools.curvature.lanczos import default_basis_dtype
    from analysis_tools.curvature.quantities import Density, Trace
    from tests.analysis_tools import zoo, zoo_catalog

    warnings.simplefilter("ignore")
    row = {"model": name, "status": "ok", "step": None, "error": None}
    start = time.perf_counter()
    step = "build"

    def enter(name):  # the parent names the step a timed-out model was in
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"step {name} at {time.perf_counter() - start:.0f} s (peak RSS so far {rss:.1f} GB)",
            file=sys.stderr,
            flush=True,
        )
        return name

    def finite(values, what):
        bad = {k: v for k, v in values.items() if not np.all(np.isfinite(v))}
        if bad:
            raise AssertionError(f"{what}: not finite: {sorted(bad)}")

    try:
        try:
            model, (x, y), loss = zoo_catalog.build(name)
        except zoo_catalog.Unbuildable as reason:
            row.update(status="unbuildable", error=str(reason))
            return row
        model.compile(optimizer=tf_adaptive.Adam(1e-3), loss=loss, jit_compile=False)
        row["parameters"] = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        step = enter("blocks")
        blocks = analysis_tools.curvature.model_blocks(model)
        row["blocks"] = len(blocks)
        row["block_names"] = list(blocks)[:6] + (["…"] if len(blocks) > 6 else [])
        last_block = list(blocks)[-1]

        step = enter("fit")
        sharpness = analysis_tools.SharpnessCallback(
            (x, y),
            every_n_steps=1,
            blocks=[last_block],
            quantities=[Trace(num_products=3), Density(num_iterations=4)],
            tolerance=1e-3,
            warm_start=False,
            jit_compile=jit_compile,
        )
        noise = analysis_tools.GradientNoiseCallback(
            (x, y), batch_size=2, num_batches=2, at_start=False, jit_compile=jit_compile
        )
        updates = analysis_tools.UpdateDistributionCallback(layers=None, steps=1)
        history = model.fit(
            x, y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[sharpness, noise, updates]
        )
        # Standard errors are NaN by design where Hutch++'s few products leave no spread to estimate.
        logs = {key: values[-1] for key, values in history.history.items() if not key.endswith("_standard_error")}
        for key in (
            "sharpness",
            "preconditioned_sharpness",
            "hessian_trace",
            "preconditioned_hessian_trace",
            f"sharpness/{last_block}",
        ):
            if key not in logs:
                raise AssertionError(f"fit logged no {key}")
        finite(logs, "fit")
        operator = sharpness.operator
        row["unused_variables"] = operator.unused_variables
        row["stopped_gradients"] = len(operator.stopped_gradients)

        step = enter("functions")
        top = analysis_tools.sharpness(operator, tolerance=1e-3)
        if abs(top - sharpness.records[-1].values["sharpness"]) > 1e-2 * abs(top):
            raise AssertionError(f"sharpness {top} against the callback's {sharpness.records[-1].values['sharpness']}")
        values = {
            "preconditioned_sharpness": analysis_tools.preconditioned_sharpness(
                operator, model.optimizer, tolerance=1e-3
            ),
            "trace": analysis_tools.hessian_trace(operator, num_products=3).estimate,
            "density": np.concatenate(
                analysis_tools.curvature.spectral_density(operator, num_vectors=1, num_iterations=4).nodes
            ),
            "noise_scale": analysis_tools.gradient_noise(
                model, (x, y), batch_size=2, num_batches=2, jit_compile=jit_compile
            ).noise_scale,
        }
        finite(values, "functions")

        step = enter("finite differences")
        if row["stopped_gradients"]:
            # The product is the Hessian of the loss with the stopped values held, which finite
            # differences of the gradient cannot see (they move those values). The check is of the
            # product machinery on this architecture: with the stops let through, H v is the loss's own.
            tf.stop_gradient = tf.identity
            row["note"] = (
                f"stop_gradient on {row['stopped_gradients']} weight-dependent values: H is the loss's "
                "with them held; checked with them let through"
            )
        try:
            model64, data64, loss64 = zoo_catalog.build(name, dtype="float64")
        except zoo_catalog.Unbuildable as reason:  # a KerasHub defect in float64 only: no check, stated
            row.update(status="limited", step=step, error=f"not built in float64: {reason}")
            return row
        model64.compile(optimizer=tf_adaptive.Adam(1e-3), loss=loss64, jit_compile=False)
        model64.fit(*data64, batch_size=2, epochs=1, verbose=0, shuffle=False)

        def top_pair(jit_compile):
            operator = analysis_tools.HessianOperator(model64, data64, jit_compile=jit_compile)
            # The basis holds one vector per step: at most BASIS_BYTES of them (a 28M-parameter ConvNeXt at
            # 80 steps would hold 9 GB). The check compares H v with finite differences along whatever v
            # Lanczos reaches; the Ritz residual says how far that is from an eigenvector.
            size = operator.dimension * default_basis_dtype(operator.dimension).size
            return operator, analysis_tools.hessian_eigenvalues(
                operator, tolerance=1e-8, max_iterations=int(min(80, max(10, BASIS_BYTES // size))), return_vectors=True
            )

        try:
            operator64, result = top_pair(jit_compile=jit_compile)
        except ValueError as error:
            if "XLA has no kernel" not in str(error):
                raise
            # A limitation of TensorFlow's XLA bridge (MaxPoolGradGrad is float32-only), stated by the
            # library's error; the float64 check then runs the products uncompiled, as the error advises.
            row["note"] = "; ".join(
                filter(None, [row.get("note"), "float64 products uncompiled: " + str(error).split(", and ")[0]])
            )
            operator64, result = top_pair(jit_compile=False)
        row["float32_ops"] = _float32_ops(model64, data64[0])
        eigenvalue, vector = float(result.eigenvalues[0]), result.eigenvectors[0].numpy()
        product = operator64.matvec(vector).numpy()
        row["ritz_residual"] = float(np.linalg.norm(product - eigenvalue * vector) / abs(eigenvalue))
        errors = zoo.finite_difference_errors(operator64, eigenvalue, vector, epsilons=EPSILONS, expected=product)
        row["fd_error"] = min(errors.values())
        if not row["fd_error"] < FD_TOLERANCE:
            row.update(
                status="limited", step=step, error=f"H v agrees with finite differences to {row['fd_error']:.1e} only"
            )
    except Exception as error:  # a row names what failed; the sweep goes on
        row.update(status="failed", step=step, error=_first_line(error))
    finally:
        row["seconds"] = time.perf_counter() - start
        row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def _float32_ops(model, x):
    """The op types of the model's forward pass that compute in float32 inside a float64 model.

    TensorFlow's bilinear and bicubic resizes do (see LIMITATIONS), so do the rotary embeddings and
    norms some KerasHub models compute in float32 on purpose; a whole list of them means the model was
    not built in float64 at all.
    """
    import tensorflow as tf

    spec = tf.nest.map_structure(lambda a: tf.TensorSpec(a.shape, a.dtype), x)
    graph = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(spec).graph
    found = set()

    def visit(graph):
        for op in graph.get_operations():
            if op.type not in _PLUMBING and any(t.dtype == tf.float32 for t in op.outputs):
                found.add(op.type)
        for function in graph._functions.values():
            if hasattr(function, "graph"):
                visit(function.graph)

    visit(graph)
    return sorted(found)


def _last_step(stderr):
    """The step a model's process was in when it stopped, from its "step …" lines (`sweep_one`)."""
    steps = [line for line in stderr.splitlines() if line.startswith("step ")]
    return steps[-1][len("step ") :] if steps else "build"


def _run_child(name, uncompiled=False):
    command = [sys.executable, os.path.abspath(__file__), f"--child={name}", f"--memory_limit={FLAGS.memory_limit}"]
    command += ["--uncompiled"] if uncompiled else []
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=FLAGS.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as timeout:
        stderr = timeout.stderr.decode() if isinstance(timeout.stderr, bytes) else timeout.stderr or ""
        return {
            "model": name,
            "status": "failed",
            "step": "timeout",
            "error": f"did not finish in {FLAGS.timeout} s (in {_last_step(stderr)})",
        }
    for line in reversed(process.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    where = _last_step(process.stderr)
    if process.returncode == _OVER_MEMORY and not uncompiled:
        # XLA's compilation of the second-order programs of a deep network can pass the machine's memory
        # (DenseNet121's Hessian-vector product: 8.2 GB and 126 s to compile, against 2.5 GB and the same
        # 0.2 s a product uncompiled). Such a model runs again with the instruments uncompiled.
        row = _run_child(name, uncompiled=True)
        row["note"] = "; ".join(
            filter(
                None,
                [
                    f"instruments uncompiled: compiled, the process passed {FLAGS.memory_limit:g} GB (in {where})",
                    row.get("note"),
                ],
            )
        )
        return row
    if process.returncode == _OVER_MEMORY:
        return {
            "model": name,
            "status": "failed",
            "step": "memory",
            "error": f"passed {FLAGS.memory_limit:g} GB uncompiled too (in {where})",
        }
    tail = (process.stderr.strip().splitlines() or ["no output"])[-1]
    return {"model": name, "status": "failed", "step": "process", "error": tail[:300]}


_MARKS = {"ok": "✓", "limited": "limited", "failed": "✗", "unbuildable": "not built"}


def write_table(rows, path, catalog):
    counts = {status: sum(row["status"] == status for row in rows) for status in _MARKS}
    swept = {row["model"] for row in rows}
    pending = [name for name in catalog if name not in swept]
    lines = [
        "# The architecture sweep",
        "",
        "Written by `python benchmarks/zoo_sweep.py` (see its docstring for what each row runs). Models are built",
        "small from their constructor arguments (`tests/analysis_tools/zoo_catalog.py`); FD is the relative",
        "error of H v against central differences of gradients along the top Ritz vector v, in float64 (✓ below",
        "2e-4); the Ritz residual ‖H v − λv‖ / |λ| says how far Lanczos took that eigenpair in 80 steps (fewer",
        "where the basis would pass 2 GiB: 19 for the 28 M-parameter ConvNeXtTiny). A row that ran alone after",
        "timing out beside other jobs says so, and so does a row whose compiled run passed the memory limit",
        "(16 GB) and ran again with every instrument uncompiled.",
        "",
        f"{len(rows)} of the catalog's {len(catalog)} architectures swept: "
        + ", ".join(f"{counts[s]} {_MARKS[s]}" for s in _MARKS)
        + ".",
        "",
        "| model | status | FD error | Ritz residual | blocks | parameters | s | peak RSS GB | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: r["model"]):
        fd = f"{row['fd_error']:.1e}" if row.get("fd_error") is not None else ""
        residual = f"{row['ritz_residual']:.1e}" if row.get("ritz_residual") is not None else ""
        float32 = row.get("float32_ops") and f"float32 inside float64: {', '.join(row['float32_ops'])}"
        notes = "; ".join(filter(None, [row.get("error"), row.get("note"), float32]))
        if row.get("step") and row["status"] != "unbuildable":
            notes = f"{row['step']}: {notes}"
        if row.get("unused_variables"):
            notes = (notes + " " if notes else "") + f"unused (zero curvature): {', '.join(row['unused_variables'])}"
        notes = notes.replace("|", "\\|")
        seconds = f"{row['seconds']:.0f}" if row.get("seconds") is not None else ""
        rss = f"{row['peak_rss_gb']:.2f}" if row.get("peak_rss_gb") is not None else ""
        lines.append(
            f"| {row['model']} | {_MARKS[row['status']]} | {fd} | {residual} | {row.get('blocks', '')} | "
            f"{row.get('parameters', '')} | {seconds} | {rss} | {notes} |"
        )
    if pending:
        lines += ["", f"Not swept yet ({len(pending)}): " + ", ".join(pending) + "."]
    lines += ["", LIMITATIONS.rstrip()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    del argv
    if FLAGS.child:
        _watch_memory(FLAGS.memory_limit)
        print(json.dumps(sweep_one(FLAGS.child, jit_compile=not FLAGS.uncompiled)))
        return
    from tests.analysis_tools import zoo_catalog

    names = list(zoo_catalog.catalog())
    if FLAGS.list:
        print("\n".join(names))
        return
    if FLAGS.models:
        unknown = sorted(set(FLAGS.models) - set(names))
        if unknown:
            raise SystemExit(f"Not in the catalog: {unknown}")
        names = [name for name in names if name in FLAGS.models]
    if FLAGS.shard:
        match = re.fullmatch(r"(\d+)/(\d+)", FLAGS.shard)
        if not match or not int(match[1]) < int(match[2]):
            raise SystemExit(f"--shard must be k/n with 0 <= k < n, got {FLAGS.shard!r}")
        names = names[int(match[1]) :: int(match[2])]
    done = {}
    if os.path.exists(FLAGS.results):
        with open(FLAGS.results) as f:
            done = {row["model"]: row for row in map(json.loads, f)}
    for name in names:
        if name in done:
            continue
        row = _run_child(name)
        done[name] = row
        with open(FLAGS.results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: {row['status']} {row.get('step') or ''} {row.get('error') or ''}"[:200], flush=True)
    with open(FLAGS.results) as f:  # every row, the other shards' too
        rows = {row["model"]: row for row in map(json.loads, f)}
    write_table(list(rows.values()), FLAGS.output, list(zoo_catalog.catalog()))


if __name__ == "__main__":
    app.run(main)
