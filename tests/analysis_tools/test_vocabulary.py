"""One vocabulary across the public API: `tolerance`, `num_products`, `estimator=`, `differentiation=`.

The former names (`tol`; `num_samples` and `trace_samples` for counts of
products; `method` for an estimator or for the autodiff mode, `product_method`,
`tail_index_method`) still work for one release: each gives what its new name
gives, with a `DeprecationWarning`, and a call that passes both is a
`TypeError`. No public signature takes them again.
"""

import importlib
import inspect
import pkgutil

import keras
import numpy as np
import pytest

import analysis_tools
import tf_adaptive
from analysis_tools.curvature import hessian
from analysis_tools.noise import tail_estimators

FORMER_NAMES = {"tol", "num_samples", "method", "product_method", "trace_samples", "tail_index_method"}
# Fields of result records that count data samples, not products: `num_samples` is the right name there.
SAMPLE_COUNTS = {("TailIndex", "num_samples"), ("UpdateDistributionFit", "num_samples")}
FORWARD = "forward_over_reverse"


@pytest.fixture(scope="module")
def setting():
    """A Dense(3) model after one Adam step on 8 examples, and an operator of its Hessian."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype("float32")
    y = rng.standard_normal((8, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=tf_adaptive.Adam(1e-2), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    operator = analysis_tools.HessianOperator(model, (x, y), jit_compile=False)
    return dict(model=model, data=(x, y), operator=operator)


def _matrix_matvec(v):
    return np.diag(np.arange(1.0, 7.0)) @ v.numpy()


# (name, call(setting, **keywords) -> a comparable value, former keywords, current keywords)
RENAMED_KEYWORDS = [
    (
        "hessian_eigenvalues(tol=)",
        lambda s, **kw: analysis_tools.hessian_eigenvalues(s["operator"], k=2, **kw).eigenvalues.numpy(),
        {"tol": 1e-2},
        {"tolerance": 1e-2},
    ),
    (
        "sharpness(tol=)",
        lambda s, **kw: analysis_tools.sharpness(s["operator"], **kw),
        {"tol": 1e-2},
        {"tolerance": 1e-2},
    ),
    (
        "preconditioned_sharpness(tol=)",
        lambda s, **kw: analysis_tools.preconditioned_sharpness(s["operator"], s["model"].optimizer, **kw),
        {"tol": 1e-2},
        {"tolerance": 1e-2},
    ),
    (
        "hutchinson(num_samples=)",
        lambda s, **kw: analysis_tools.curvature.hutchinson(_matrix_matvec, 6, **kw).estimate,
        {"num_samples": 5},
        {"num_products": 5},
    ),
    (
        "hessian_trace(num_samples=)",
        lambda s, **kw: analysis_tools.hessian_trace(s["operator"], **kw).estimate,
        {"num_samples": 4},
        {"num_products": 4},
    ),
    (
        "hessian_trace(method=)",
        lambda s, **kw: tuple(analysis_tools.hessian_trace(s["operator"], num_products=4, **kw)[:4]),
        {"method": "hutchinson"},
        {"estimator": "hutchinson"},
    ),
    (
        "hessian_trace(product_method=)",
        lambda s, **kw: (
            analysis_tools.hessian_trace(s["model"], s["data"], num_products=3, jit_compile=False, **kw).estimate
        ),
        {"product_method": FORWARD},
        {"differentiation": FORWARD},
    ),
    (
        "HessianOperator(method=)",
        lambda s, **kw: (lambda operator: (operator.differentiation, operator.matvec(np.ones(15)).numpy().tolist()))(
            analysis_tools.HessianOperator(s["model"], s["data"], jit_compile=False, **kw)
        ),
        {"method": FORWARD},
        {"differentiation": FORWARD},
    ),
    (
        "tail_index(method=)",
        lambda s, **kw: analysis_tools.tail_index(np.random.default_rng(1).standard_t(3, 500), **kw)[:2],
        {"method": "hill"},
        {"estimator": "hill"},
    ),
    (
        "SharpnessCallback(tol=)",
        lambda s, **kw: analysis_tools.SharpnessCallback(s["data"], **kw).tolerance,
        {"tol": 1e-2},
        {"tolerance": 1e-2},
    ),
    (
        "SharpnessCallback(method=)",
        lambda s, **kw: analysis_tools.SharpnessCallback(s["data"], **kw).operator_kwargs,
        {"method": FORWARD},
        {"differentiation": FORWARD},
    ),
    (
        "GradientNoiseCallback(tail_index_method=)",
        lambda s, **kw: analysis_tools.GradientNoiseCallback(s["data"], **kw).tail_index_estimator,
        {"tail_index_method": "hill"},
        {"tail_index_estimator": "hill"},
    ),
]


@pytest.mark.parametrize("name, call, former, current", RENAMED_KEYWORDS, ids=[r[0] for r in RENAMED_KEYWORDS])
@pytest.mark.slow
def test_a_former_keyword_gives_the_same_result_with_a_deprecation_warning(setting, name, call, former, current):
    expected = call(setting, **current)
    (old,), (new,) = former, current
    with pytest.warns(DeprecationWarning, match=f"`{old}` is deprecated; use `{new}`") as caught:
        got = call(setting, **former)
    np.testing.assert_equal(got, expected)
    # Attributed to the caller (this file), not to the line inside analysis_tools that read the name.
    assert any(record.filename == __file__ for record in caught), [record.filename for record in caught]
    with pytest.raises(TypeError, match=f"both `{old}` and `{new}`"):
        call(setting, **former, **current)


@pytest.mark.slow
def test_former_attributes_and_constants_read_the_new_ones_with_a_deprecation_warning(setting):
    operator = analysis_tools.HessianOperator(
        setting["model"], setting["data"], jit_compile=False, differentiation=FORWARD
    )
    trace = analysis_tools.curvature.hutchinson(_matrix_matvec, 6, num_products=2)
    tail = analysis_tools.tail_index(np.random.default_rng(1).standard_t(3, 500), estimator="hill")
    sharpness = analysis_tools.SharpnessCallback(
        setting["data"], tolerance=1e-2, quantities=[analysis_tools.curvature.quantities.Trace(7)]
    )
    noise = analysis_tools.GradientNoiseCallback(setting["data"], tail_index_estimator="hill")
    fit = analysis_tools.updates.fit_update_distribution(analysis_tools.AdaptiveUpdate(8.0).sample(2000, seed=(1, 1)))
    cases = [
        (lambda: fit.m_stderr, "m_stderr", "m_standard_error", fit.m_standard_error),
        (lambda: operator.method, "method", "differentiation", FORWARD),
        (lambda: trace.method, "method", "estimator", "hutchinson"),
        (lambda: tail.method, "method", "estimator", "hill"),
        (lambda: sharpness.tol, "tol", "tolerance", 1e-2),
        (lambda: sharpness.trace_samples, "trace_products", "Trace.num_products", 7),
        (lambda: sharpness.trace_products, "trace_products", "Trace.num_products", 7),
        (lambda: noise.tail_index_method, "tail_index_method", "tail_index_estimator", "hill"),
        (lambda: hessian.METHODS, "METHODS", "DIFFERENTIATIONS", hessian.DIFFERENTIATIONS),
        (lambda: tail_estimators.METHODS, "METHODS", "ESTIMATORS", tail_estimators.ESTIMATORS),
    ]
    for read, old, new, value in cases:
        with pytest.warns(DeprecationWarning, match=f"`{old}` is deprecated; use `{new}`"):
            assert read() == value
    with pytest.raises(AttributeError):
        operator.method = "reverse_over_reverse"  # read-only
    with pytest.raises(AttributeError, match="UNKNOWN"):
        hessian.UNKNOWN


def _public_modules():
    """analysis_tools and every module under it whose path has no private part."""
    yield analysis_tools
    for info in pkgutil.walk_packages(analysis_tools.__path__, "analysis_tools."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def _public_callables():
    """(qualified name, callable) of every name in a public module's `__all__`, and of its classes' public methods."""
    seen = set()
    for module in _public_modules():
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if not callable(value) or id(value) in seen:
                continue
            seen.add(id(value))
            yield name, value
            if inspect.isclass(value):
                for attribute, member in vars(value).items():
                    if not attribute.startswith("_") and inspect.isfunction(member):
                        yield f"{name}.{attribute}", member


def test_no_public_signature_takes_a_former_name():
    checked, offenders = 0, []
    for name, value in _public_callables():
        try:
            parameters = inspect.signature(value).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            continue
        checked += 1
        owner = name.split(".")[0]
        offenders += [
            f"{name}({parameter})"
            for parameter in parameters
            if parameter in FORMER_NAMES and (owner, parameter) not in SAMPLE_COUNTS
        ]
    assert checked > 100, checked
    assert not offenders, f"former names in public signatures: {offenders}"


def test_the_walk_sees_the_renamed_keywords():
    # The signature walk reads through the deprecation wrapper to the function's own parameters.
    names = dict(_public_callables())
    assert "tolerance" in inspect.signature(names["hessian_eigenvalues"]).parameters
    assert {"num_products", "estimator"} <= set(inspect.signature(names["hessian_trace"]).parameters)
    assert "differentiation" in inspect.signature(names["HessianOperator"]).parameters
    assert {"tolerance", "quantities"} <= set(inspect.signature(names["SharpnessCallback"]).parameters)
    assert "tail_index_estimator" in inspect.signature(names["GradientNoiseCallback"]).parameters
    assert "estimator" in inspect.signature(names["tail_index"]).parameters
