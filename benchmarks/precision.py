r"""The float32 replica path against a float64 reference, and mixed_bfloat16 models against float32 twins.

For each zoo model (KerasHub GPT-2 and BERT, keras.applications ResNet50 and
ConvNeXtTiny at the zoo's small configuration, `tests/analysis_tools/zoo.py`)
three twins hold the same weights: the float32 model, a float64 copy (the
reference: every product in float64), and a mixed_bfloat16 copy (float32
weights, bfloat16 computation). P is the float32 model's Adam
preconditioner after two training steps, the same for all three. Each twin
gives λ1(H), λ1(P⁻¹H) (Lanczos, tolerance 1e-7), tr(H) (Hutch++, 30
products, the same probe vectors) and the first two moments of the
spectral density (SLQ, 2 vectors × `--max_iterations` steps, the same start vectors;
the same length as the Lanczos runs, so that they share one basis: the float64 basis of a
25 M-parameter model takes 200 MB a step).

    python benchmarks/precision.py
    python benchmarks/precision.py --models=gpt2,bert
    python benchmarks/precision.py --models=mobilenet_v3_small,resnet50 --mode=inference --max_iterations=20

The table gives each quantity of the float64 reference, and the float32 and
bfloat16 twins' relative differences from it (for the trace, also in units
of the reference's standard error).
"""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["gpt2", "bert", "resnet50", "convnext_tiny"], "Zoo models to compare.")
flags.DEFINE_integer("max_iterations", 80, "Lanczos steps at most.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "inference"],
    "The operators' mode: inference measures BatchNorm models with their moving statistics.",
)
flags.DEFINE_string("child", None, "Internal: measure one model:policy twin and print JSON.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _twin(name, policy, weights):
    """The zoo model `name` under the dtype policy `policy`, holding `weights`, with a float loss."""
    import keras
    import numpy as np

    from tests.analysis_tools import zoo

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model, data = zoo._BUILDERS[name](policy if name in zoo.TRANSFORMERS else keras.config.floatx(), rng)
    finally:
        keras.config.set_dtype_policy(previous)
    loss_dtype = "float64" if policy == "float64" else "float32"
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=loss_dtype))
    model(data[0])
    model.set_weights([np.asarray(w, keras.backend.standardize_dtype(v.dtype)) for w, v in zip(weights, model.weights)])
    return model, data


def _measure(model, data, preconditioner, max_iterations, mode):
    import numpy as np

    import analysis_tools

    # XLA has no float64 or bfloat16 kernel for max pooling's second derivative (ResNet50): those twins
    # then run their products without XLA (the same numbers), as the library's error advises.
    float64 = model.trainable_variables[0].dtype == "float64"
    operator = analysis_tools.HessianOperator(model, data, jit_compile=not float64, mode=mode)
    exact = dict(max_iterations=max_iterations, tolerance=1e-7, seed=0)
    try:
        sharpness = float(analysis_tools.hessian_eigenvalues(operator, **exact).eigenvalues[0])
    except ValueError as error:
        if "XLA has no kernel" not in str(error):
            raise
        operator = analysis_tools.HessianOperator(model, data, jit_compile=False, mode=mode)
        sharpness = float(analysis_tools.hessian_eigenvalues(operator, **exact).eigenvalues[0])
    preconditioned = float(
        analysis_tools.hessian_eigenvalues(operator, preconditioner=preconditioner, **exact).eigenvalues[0]
    )
    trace = analysis_tools.hessian_trace(operator, num_products=30, seed=0)
    density = analysis_tools.curvature.spectral_density(operator, num_vectors=2, num_iterations=max_iterations, seed=0)
    return {
        "λ1(H)": sharpness,
        "λ1(P⁻¹H)": preconditioned,
        "tr(H)": float(trace.estimate),
        "tr SE": float(trace.standard_error),
        "m1": density.moment(1)[0],
        "m2": density.moment(2)[0],
        "parameters": int(np.sum([np.prod(v.shape) for v in model.trainable_variables])),
    }


def _child(name, policy, max_iterations, mode):
    """One twin's measurements, in this process (a fresh one per twin: a float64 basis of a 25 M-parameter
    model is 200 MB a step, and its memory is returned when the process ends)."""
    import numpy as np

    from analysis_tools.preconditioners import preconditioner_of
    from tests.analysis_tools import zoo

    model, data = zoo.build(name)
    model.fit(data[0], data[1], batch_size=len(data[1]), epochs=2, verbose=0)
    preconditioner = [np.asarray(p, np.float64) for p in preconditioner_of(model.optimizer, model.trainable_variables)]
    if policy != "float32":
        model, data = _twin(name, policy, [np.asarray(w) for w in model.get_weights()])
    return _measure(model, data, preconditioner, max_iterations, mode)


def main(argv):
    del argv
    if FLAGS.child:
        sys.path.insert(0, ROOT)
        name, policy = FLAGS.child.split(":")
        print(json.dumps(_child(name, policy, FLAGS.max_iterations, FLAGS.mode)))
        return
    for name in FLAGS.models:
        results = {}
        for policy in ("float64", "float32", "mixed_bfloat16"):
            process = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    f"--child={name}:{policy}",
                    f"--max_iterations={FLAGS.max_iterations}",
                    f"--mode={FLAGS.mode}",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            if process.returncode:
                raise SystemExit(f"{name}:{policy} failed:\n{process.stderr[-3000:]}")
            results[policy] = json.loads(process.stdout.strip().splitlines()[-1])
            print(f"{name}:{policy}: {json.dumps(results[policy])}", flush=True)  # kept if a later twin fails
        reference = results["float64"]
        print(f"\n{name} ({reference['parameters']:,} parameters)", flush=True)
        print(f"{'quantity':<10}{'float64':>14}{'float32 rel.':>14}{'bf16 rel.':>12}")
        for key in ("λ1(H)", "λ1(P⁻¹H)", "tr(H)", "m1", "m2"):
            cells = [abs(results[p][key] - reference[key]) / abs(reference[key]) for p in ("float32", "mixed_bfloat16")]
            print(f"{key:<10}{reference[key]:>14.6g}{cells[0]:>14.1e}{cells[1]:>12.1e}")
        for policy in ("float32", "mixed_bfloat16"):
            gap = abs(results[policy]["tr(H)"] - reference["tr(H)"]) / reference["tr SE"]
            print(f"  tr(H) {policy}: {gap:.2g} standard errors from the reference", flush=True)


if __name__ == "__main__":
    app.run(main)
