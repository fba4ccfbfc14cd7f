r"""The Lanczos basis work, float64 and float32, against an earlier version of the code, side by side.

An operator as cheap as one can be (a diagonal matrix), so that what is timed
is the solver's own work: the two reorthogonalization passes, α, β, the
symmetry check and the small eigenproblem. 20 steps, no early stop, then the
Ritz vector. Settings:

- ``float64``: n = 2·10⁶, the default float64 basis (matvec projections);
- ``float32``: n = 8·10⁶, above ``float64_dimension_limit``, so the default
  basis is float32. On a CPU it is still projected with matvecs and its α, β
  are float64 dots; what the accelerator placement changed for it is where
  its float64 scalars live (the host), and, on a GPU or TPU, elementwise
  projections and (TPU) compensated dots (`lanczos.compensated_dot`), which
  this CPU run does not time;
- ``accelerator``: n = 2·10⁶, ``basis_device="accelerator"`` (float32 basis,
  float64 only on the host), against the same n in float64 above; the
  baseline has no such placement.

    python benchmarks/lanczos_basis.py --baseline=<revision>

Each is a fresh interpreter; the time is the median of 3 calls after a first
(tracing) one, and the peak RSS the process's.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _baseline import compare, median
from absl import app

SETTINGS = {
    "float64": (2_000_000, {}),
    "float32": (8_000_000, {}),
    "accelerator": (2_000_000, {"basis_device": "accelerator"}),
}
STEPS = 20


def _measure(setting):
    import tensorflow as tf
    from _timing import median_seconds, peak_rss_mb

    from analysis_tools.curvature.lanczos import Lanczos

    n, options = SETTINGS[setting]
    try:
        solver = Lanczos(n, max_iterations=STEPS, min_iterations=STEPS, tolerance=1e-15, return_vectors=True, **options)
    except ValueError:  # a placement this version does not have
        return {"seconds": None, "peak_rss_mb": None}
    diagonal = tf.cast(tf.linspace(1.0, 2.0, n), solver.basis_dtype)

    def run():
        result = solver(lambda v: diagonal * v)
        assert int(result.iterations) == STEPS
        return result.eigenvalues.numpy()

    run()
    return {"seconds": median_seconds(run, 3), "peak_rss_mb": peak_rss_mb()}


def main(argv):
    del argv
    results = compare(__file__, _measure, SETTINGS)
    if results is None:
        return

    def cell(runs, key):
        values = [r[key] for r in runs if r[key] is not None]
        return median(values) if values else None

    def text(value, form):
        return "—" if value is None else format(value, form)

    print(
        f"{'setting':<13}{'n':>11}{'baseline s':>12}{'this s':>10}{'this / baseline':>17}"
        f"{'baseline MB':>13}{'this MB':>10}"
    )
    for setting, runs in results.items():
        old, new = cell(runs["baseline"], "seconds"), cell(runs["this"], "seconds")
        ratio = None if old is None else new / old
        print(
            f"{setting:<13}{SETTINGS[setting][0]:>11,}{text(old, '.3f'):>12}{text(new, '.3f'):>10}"
            f"{text(ratio, '.2f'):>17}{text(cell(runs['baseline'], 'peak_rss_mb'), ',.0f'):>13}"
            f"{text(cell(runs['this'], 'peak_rss_mb'), ',.0f'):>10}"
        )
    this = {setting: cell(runs["this"], "seconds") for setting, runs in results.items()}
    print(f"accelerator / float64 basis at n = 2,000,000 (this version): {this['accelerator'] / this['float64']:.2f}")


if __name__ == "__main__":
    app.run(main)
