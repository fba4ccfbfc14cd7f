"""`analysis_tools` imports: its layout, public names, and thresholds that are the optimizers' (one source of truth)."""

import functools
import importlib
import inspect
import pkgutil
import types

import pytest

import analysis_tools
import analysis_tools.thresholds
import tf_adaptive
from tf_adaptive import thresholds


def _all_module_names(package):
    return [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def test_the_layout_is_three_subpackages_and_the_shared_modules():
    names = set(_all_module_names(analysis_tools))
    for subpackage in ("curvature", "updates", "noise"):
        assert f"analysis_tools.{subpackage}" in names
    assert {"analysis_tools.preconditioners", "analysis_tools.thresholds"} <= names


def test_every_submodule_is_a_module_at_its_dotted_path():
    """`import analysis_tools.<sub>.<module> as m` gives the module: no function or class shadows it."""
    names = _all_module_names(analysis_tools)
    assert len(names) >= 20
    for name in names:
        module = importlib.import_module(name)
        # What `import a.b.c as m` binds: the attribute chain from the top package.
        reached = functools.reduce(getattr, name.split(".")[1:], analysis_tools)
        assert isinstance(reached, types.ModuleType), f"{name} is shadowed by {reached!r}"
        assert reached is module, name


def test_no_package_exports_a_name_that_is_also_one_of_its_modules():
    for name in ["analysis_tools"] + _all_module_names(analysis_tools):
        package = importlib.import_module(name)
        if not hasattr(package, "__path__"):
            continue
        children = {info.name for info in pkgutil.iter_modules(package.__path__)}
        assert not children & set(package.__all__), name


def test_all_lists_functions_and_classes_not_modules():
    for name in analysis_tools.__all__:
        value = getattr(analysis_tools, name)
        assert not isinstance(value, types.ModuleType), name
        assert inspect.isclass(value) or callable(value), name


# The public surface, pinned: a name added or removed at the top is a decision, made here as well.
TOP_LEVEL = {
    "AdaptiveUpdate",
    "GGNOperator",
    "GradientNoiseCallback",
    "HessianOperator",
    "Lanczos",
    "SharpnessCallback",
    "SharpnessTracker",
    "UpdateDistributionCallback",
    "gradient_noise",
    "hessian_eigenvalues",
    "hessian_trace",
    "preconditioned_sharpness",
    "preconditioner_of",
    "sharpness",
    "tail_index",
}
OPTIMIZERS = {
    "ACClip",
    "Adafactor",
    "Adagrad",
    "Adam",
    "CClip",
    "FrozenAdam",
    "GClip",
    "HeavyBall",
    "LaProp",
    "MSSD",
    "MSVAG",
    "Nadam",
    "Nesterov",
    "Padam",
    "RAdam",
    "RMSProp",
    "SSD",
    "SVAG",
    "SecondMoment",
}


def _public_names(package):
    """The names `dir(package)` shows that are neither private nor modules."""
    return {
        name
        for name in dir(package)
        if not name.startswith("_") and not isinstance(getattr(package, name), types.ModuleType)
    }


def test_the_top_level_public_surface_is_pinned():
    assert set(analysis_tools.__all__) == TOP_LEVEL
    assert _public_names(analysis_tools) == TOP_LEVEL
    assert set(tf_adaptive.__all__) == OPTIMIZERS
    assert _public_names(tf_adaptive) == OPTIMIZERS


@pytest.mark.parametrize("subpackage", ["curvature", "updates", "noise", "preconditioners"])
def test_a_name_that_left_the_top_level_resolves_with_a_warning_naming_its_subpackage(subpackage):
    package = importlib.import_module(f"analysis_tools.{subpackage}")
    moved = [name for name in package.__all__ if name not in TOP_LEVEL]
    assert moved
    for name in moved:
        with pytest.warns(DeprecationWarning, match=rf"use `analysis_tools\.{subpackage}\.{name}`"):
            assert getattr(analysis_tools, name) is getattr(package, name)
    for name in TOP_LEVEL & set(package.__all__):
        assert getattr(analysis_tools, name) is getattr(package, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        analysis_tools.no_such_name


def test_analysis_tools_thresholds_are_the_optimizers_formulas():
    assert analysis_tools.thresholds.stability_threshold is thresholds.stability_threshold
    assert analysis_tools.thresholds.asymptotic_growth_factor is thresholds.asymptotic_growth_factor
    assert set(analysis_tools.thresholds.MOMENTUM_TYPES) == set(thresholds.MOMENTUM_TYPES)


def test_an_optimizer_threshold_agrees_with_the_analysis_formula():
    optimizer = tf_adaptive.MSVAG(learning_rate=0.02, beta=0.9)
    expected = analysis_tools.thresholds.stability_threshold(0.02, analysis_tools.thresholds.EMA_HEAVY_BALL, 0.9)
    assert optimizer.stability_threshold() == pytest.approx(expected, rel=1e-6)  # η is stored in float32
    assert expected == pytest.approx((2 + 2 * 0.9) / ((1 - 0.9) * 0.02), rel=1e-12)
