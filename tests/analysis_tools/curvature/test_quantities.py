"""`analysis_tools.curvature.quantities`: the options of each quantity, the callback's checks, the 0.2 keywords.

What each quantity measures is checked against dense references in
`test_callback_curvatures.py` (traces, alignment, angles),
`test_trace_density_blocks.py` (trace, density) and `test_sharpness_callback.py`
(top-subspace fraction).
"""

import dataclasses
import warnings

import keras
import numpy as np
import pytest

from analysis_tools import SharpnessCallback
from analysis_tools.curvature.quantities import (
    Density,
    Measurement,
    PreconditionerAlignment,
    PrincipalAngles,
    Quantity,
    TopSubspaceFraction,
    Trace,
)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Trace(num_products=2), "`num_products` must be an integer >= 3"),
        (lambda: Trace(num_products=True), "`num_products` must be an integer >= 3"),
        (lambda: Trace(num_products=30.5), "`num_products` must be an integer >= 3"),
        (lambda: Density(num_vectors=0), "`num_vectors` must be an integer >= 1"),
        (lambda: Density(num_iterations=0), "`num_iterations` must be an integer >= 1"),
        (lambda: PreconditionerAlignment(num_products=0), "`num_products` must be an integer >= 1"),
    ],
)
def test_each_quantity_refuses_bad_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_quantities_are_immutable_values():
    trace = Trace(num_products=12)
    assert trace == Trace(12) and trace != Trace(13) and hash(trace) == hash(Trace(12))
    with pytest.raises(dataclasses.FrozenInstanceError):
        trace.num_products = 3
    assert Density(2.0, 10).num_vectors == 2 and isinstance(Density(2.0, 10).num_vectors, int)


def test_the_callback_refuses_what_its_settings_cannot_give():
    with pytest.raises(ValueError, match="two curvatures"):
        SharpnessCallback(None, quantities=[PrincipalAngles()])
    with pytest.raises(ValueError, match="keep `raw`"):
        SharpnessCallback(None, raw=False, curvature=("hessian", "ggn"), quantities=[PrincipalAngles()])
    with pytest.raises(ValueError, match="Ritz vectors"):
        SharpnessCallback(None, lockstep=True, quantities=[TopSubspaceFraction()])
    with pytest.raises(ValueError, match="names Trace twice"):
        SharpnessCallback(None, quantities=[Trace(), Trace(5)])
    with pytest.raises(ValueError, match="takes instances"):
        SharpnessCallback(None, quantities=[Trace])
    with pytest.raises(ValueError, match="takes instances"):
        SharpnessCallback(None, quantities=["trace"])
    with pytest.raises(ValueError, match="must be a list of quantities"):
        SharpnessCallback(None, quantities="trace")
    assert SharpnessCallback(None, quantities=Trace(4)).quantities == (Trace(4),)
    callback = SharpnessCallback(None, curvature=("hessian", "ggn"), quantities=(Density(), PrincipalAngles()))
    assert callback.quantities == (Density(), PrincipalAngles()) and callback.curvatures == ("hessian", "ggn")


@pytest.mark.parametrize(
    "former, quantities",
    [
        (dict(trace=True), [Trace()]),
        (dict(trace=True, trace_products=7), [Trace(7)]),
        (dict(trace=True, trace_samples=7), [Trace(7)]),
        (dict(density=True, density_vectors=2, density_iterations=9), [Density(2, 9)]),
        (dict(alignment=True, alignment_products=5, alignment_power=1.0), [PreconditionerAlignment(5, 1.0)]),
        (dict(fraction_in_top_subspace=True), [TopSubspaceFraction()]),
        (dict(trace=False, trace_products=7), []),
        (dict(trace=True, density=True), [Trace(), Density()]),
    ],
)
def test_the_keywords_of_release_0_2_ask_for_the_same_quantities_with_a_warning(former, quantities):
    with pytest.warns(DeprecationWarning, match=r"is deprecated; use `quantities=\[") as caught:
        callback = SharpnessCallback(None, **former)
    assert list(callback.quantities) == quantities
    assert all(record.filename == __file__ for record in caught), [record.filename for record in caught]
    assert callback.operator_kwargs == {}  # none of them reaches the operator


def test_track_angles_and_per_layer_of_release_0_2():
    angles = r"`track_angles` is deprecated; use `quantities=\[PrincipalAngles\(\)\]"
    with pytest.warns(DeprecationWarning, match=angles):
        callback = SharpnessCallback(None, curvature=("hessian", "ggn"), track_angles=True)
    assert callback.quantities == (PrincipalAngles(),)
    for per_layer, blocks in ((True, True), (["dense"], ["dense"]), (False, None)):
        with pytest.warns(DeprecationWarning, match="`per_layer` is deprecated; use `blocks`"):
            assert SharpnessCallback(None, per_layer=per_layer).blocks == blocks
    with pytest.raises(ValueError, match="not both"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        SharpnessCallback(None, per_layer=True, blocks={"a": "dense"})
    with pytest.raises(ValueError, match="`per_layer` must be True, False or a list"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        SharpnessCallback(None, per_layer="dense")


@dataclasses.dataclass(frozen=True)
class _Gap(Quantity):
    """λ2/λ1 of the raw Hessian: a quantity of a user's own, from the callback's Lanczos results."""

    def check(self, callback):
        if callback.k < 2:
            raise ValueError("`_Gap` needs k >= 2.")

    def measure(self, callback, measurement):
        assert isinstance(measurement, Measurement)
        top = measurement.results["raw"].eigenvalues
        measurement.values["gap_ratio"] = float(top[1] / top[0])


@pytest.mark.slow
def test_a_quantity_of_ones_own_is_measured_and_logged_on_the_callbacks_schedule():
    with pytest.raises(ValueError, match="k >= 2"):
        SharpnessCallback(None, quantities=[_Gap()])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)), rng.normal(size=(64, 1))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    callback = SharpnessCallback(
        (x, y), every_n_steps=2, k=2, preconditioned=False, tolerance=1e-6, warm_start=False, quantities=[_Gap()]
    )
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    record = callback.records[-1]
    assert len(callback.records) == 2
    assert record.values["gap_ratio"] == pytest.approx(record.eigenvalues["raw"][1] / record.eigenvalues["raw"][0])
    assert history.history["gap_ratio"][-1] == record.values["gap_ratio"]
