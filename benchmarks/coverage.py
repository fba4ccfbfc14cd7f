r"""Coverage of every standard error the noise and update tools report, over seeds.

For each estimator, on samples drawn from a law whose parameter is known, the
fraction of `--seeds` seeds at which the true value lies within ±1.96 standard
errors of the estimate (nominal 95 %), with the estimate's mean, its spread
over seeds (sd) and the mean reported standard error beside it:

* `tail_index` (``"simsekli"``, ``"characteristic_function"``, ``"hill"``) on
  `--tail_samples` draws of SαS(α) (`SymmetricAlphaStable`), α ∈ {1, 1.5, 1.9};
* `fit_update_distribution`'s m on `--update_samples` draws of
  `AdaptiveUpdate(m)`, m ∈ {2, 5, 20};
* `fit_noise_distribution`: the Student-t's (ν, μ, σ) on Student-t(3)
  coordinates (`--noise_samples`), the scaled χ's (k, s) on norms of Gaussian
  vectors in 10 dimensions, and the generalized Pareto tail's shape ξ on
  symmetric Pareto(α = 3) magnitudes (ξ = 1/3 exactly above any threshold).

A line with coverage NaN has a standard error that is NaN by design at that
parameter (the update fit's m < 3, see `UpdateDistributionFit`).

    python benchmarks/coverage.py                       # 100 seeds: about 25 min on 2 cores
    python benchmarks/coverage.py --seeds=20 --only=tail
"""

import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 100, "Seeds per row.")
flags.DEFINE_integer("tail_samples", 10_000, "SαS draws per tail-index estimate.")
flags.DEFINE_integer("update_samples", 5_000, "AdaptiveUpdate draws per update fit.")
flags.DEFINE_integer("noise_samples", 5_000, "Samples per noise fit.")
flags.DEFINE_list("only", ["tail", "update", "noise"], "Which groups to run.")

Z = 1.96


def _row(name, truth, pairs):
    estimates, errors = (np.array(v, dtype=float) for v in zip(*pairs))
    defined = np.isfinite(errors)
    coverage = float(np.mean(np.abs(estimates[defined] - truth) <= Z * errors[defined])) if defined.any() else math.nan
    print(
        f"| {name} | {truth:g} | {coverage:.2f} | {np.mean(estimates):.4g} | {np.std(estimates):.3g} | "
        f"{np.nanmean(errors) if defined.any() else math.nan:.3g} | {int(defined.sum())} |",
        flush=True,
    )


def main(argv):
    del argv
    import analysis_tools
    from analysis_tools.noise.tail_estimators import ESTIMATORS
    from analysis_tools.updates.law import AdaptiveUpdate

    print(
        "| estimator | true value | coverage (±1.96 SE) | mean estimate | sd over seeds | mean SE | seeds with an SE |"
    )
    print("|---|---|---|---|---|---|---|")
    seeds = range(FLAGS.seeds)
    if "tail" in FLAGS.only:
        for alpha in (1.0, 1.5, 1.9):
            law = analysis_tools.noise.SymmetricAlphaStable(np.float64(alpha))
            samples = [law.sample(FLAGS.tail_samples, seed=(7, seed)).numpy() for seed in seeds]
            for estimator in ESTIMATORS:
                results = [analysis_tools.tail_index(x, estimator=estimator) for x in samples]
                _row(f"tail_index {estimator}, SαS", alpha, [(r.unclipped, r.standard_error) for r in results])
    if "update" in FLAGS.only:
        for m in (2.0, 5.0, 20.0):
            law = AdaptiveUpdate(np.float64(m))
            fits = [
                analysis_tools.updates.fit_update_distribution(law.sample(FLAGS.update_samples, seed=(8, s)).numpy())
                for s in seeds
            ]
            _row("fit_update_distribution m", m, [(f.m, f.m_standard_error) for f in fits])
    if "noise" in FLAGS.only:
        rows = {("student_t", p): [] for p in ("df", "loc", "scale")}
        rows.update({("scaled_chi", p): [] for p in ("k", "scale")})
        rows[("generalized_pareto", "shape")] = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            fit = analysis_tools.noise.fit_noise_distribution(
                rng.standard_t(3.0, FLAGS.noise_samples), kind="coordinates"
            )
            for p in ("df", "loc", "scale"):
                rows[("student_t", p)].append((fit.heavy.parameters[p], fit.heavy.standard_errors[p]))
            norms = np.linalg.norm(rng.standard_normal((FLAGS.noise_samples, 10)), axis=1)
            fit = analysis_tools.noise.fit_noise_distribution(norms, kind="norms")
            for p in ("k", "scale"):
                rows[("scaled_chi", p)].append((fit.light.parameters[p], fit.light.standard_errors[p]))
            pareto = rng.pareto(3.0, FLAGS.noise_samples) + 1.0
            fit = analysis_tools.noise.fit_noise_distribution(
                pareto * rng.choice([-1.0, 1.0], FLAGS.noise_samples), kind="coordinates"
            )
            rows[("generalized_pareto", "shape")].append((fit.tail.shape, fit.tail.standard_errors["shape"]))
        truths = {
            ("student_t", "df"): 3.0,
            ("student_t", "loc"): 0.0,
            ("student_t", "scale"): 1.0,
            ("scaled_chi", "k"): 10.0,
            ("scaled_chi", "scale"): 1.0,
            ("generalized_pareto", "shape"): 1 / 3,
        }
        for (law, p), pairs in rows.items():
            _row(f"fit_noise_distribution {law} {p}", truths[(law, p)], pairs)


if __name__ == "__main__":
    app.run(main)
