"""The one wrapper of an optimizer's `apply`: what measurements see of each update inside the train step.

Keras calls ``optimizer.apply(grads, variables)`` inside the compiled train
step (in each replica's context under a `tf.distribute` strategy), after the
gradients are computed and before they are all-reduced. A measurement that
needs a step's gradients or its update, and cannot afford to compute them
again, attaches a listener here: `StepHook` wraps `apply` once per optimizer,
and calls every listener's ``before(gradients)`` and ``after(gradients)``
around the update (a listener keeps nothing on itself between the two: under
a strategy the replicas trace them in threads that interleave). `gradients`
maps ``id(variable)`` to the replica's
gradient, divided by the optimizer's `loss_scale_factor` (a
`keras.optimizers.LossScaleOptimizer` passes its inner optimizer gradients
already unscaled, and skips the call on a non-finite step).

Whoever attaches or detaches a listener must have the model trace its train
step again (``model.make_train_function(force=True)``): the hook runs only in
a train step traced while it is installed.

`PreconditionerReader` is the listener through which the measurement
callbacks read an optimizer's P: for the optimizers whose P is made of the
latest gradient, it keeps that gradient on the steps before a measurement.
"""

import keras
import tensorflow as tf

from analysis_tools.preconditioners import _unwrap, preconditioner_needs_gradients, preconditioner_of

_ATTRIBUTE = "_measurement_step_hook"


class StepHook:
    """The wrapper of one optimizer's `apply` (see the module docstring); `attach` makes or finds it."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.listeners = []
        self._original = optimizer.apply
        optimizer.apply = self._apply
        optimizer.__dict__[_ATTRIBUTE] = self

    @classmethod
    def attach(cls, optimizer, listener):
        """Adds `listener` to `optimizer`'s hook (wrapping `apply` on the first listener); returns the hook."""
        hook = optimizer.__dict__.get(_ATTRIBUTE) or cls(optimizer)
        hook.listeners.append(listener)
        return hook

    def detach(self, listener):
        """Removes `listener`; with the last one gone, the optimizer's own `apply` is restored."""
        if listener in self.listeners:
            self.listeners.remove(listener)
        if not self.listeners and self.optimizer.__dict__.get(_ATTRIBUTE) is self:
            del self.optimizer.__dict__["apply"]
            del self.optimizer.__dict__[_ATTRIBUTE]

    def _apply(self, grads, trainable_variables=None):
        variables = self.optimizer._trainable_variables if trainable_variables is None else list(trainable_variables)
        grads = list(grads)
        scale = self.optimizer.loss_scale_factor
        gradients = {
            id(variable): (gradient if scale is None else gradient / scale)
            for gradient, variable in zip(grads, variables)
            if gradient is not None
        }
        for listener in self.listeners:
            listener.before(gradients)
        result = self._original(grads, trainable_variables)
        for listener in self.listeners:
            listener.after(gradients)
        return result


class PreconditionerReader:
    """Reads P_t of a model's optimizer for a measurement callback, with the step's gradients where P needs them.

    Where `preconditioner_needs_gradients` (SSD's P = |g_t|, Keras's
    Adafactor), the optimizer keeps no record of g_t, so a `StepHook`
    listener keeps each replica's gradient of the steps the callback `arm`s
    (the step before a measurement) in on-read variables, whose read sums the
    replicas as Keras does; other steps write nothing. Elsewhere it is
    `preconditioner_of` as is, and installs nothing.

    After making one, call ``model.make_train_function(force=True)`` where
    `hooked`: the train step must be traced again to run the listener.
    """

    def __init__(self, model):
        self.optimizer = _unwrap(model.optimizer)
        self.variables = list(model.trainable_variables)
        self._hook = None
        if not preconditioner_needs_gradients(self.optimizer):
            return
        local = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ)
        with model.distribute_strategy.scope(), tf.init_scope():
            self._kept = [
                tf.Variable(
                    tf.zeros(v.shape, tf.float32), name="kept_gradient", aggregation=tf.VariableAggregation.SUM, **local
                )
                for v in self.variables
            ]
            # The optimizer step count after the kept update (-1: none kept).
            self._kept_step = tf.Variable(
                tf.constant(-1, tf.int64),
                name="kept_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                **local,
            )
            self._armed = tf.Variable(False, trainable=False, name="keep_gradients")
        self._hook = StepHook.attach(self.optimizer, self)

    @property
    def hooked(self):
        """Whether it listens inside the train step (P needs the gradients)."""
        return self._hook is not None

    def arm(self, armed):
        """Keep (True) or not (False) the gradients of the steps from now on."""
        if self._hook is not None and bool(self._armed.numpy()) != bool(armed):
            self._armed.assign(bool(armed))

    def remove(self):
        """Detaches the listener (the caller traces the train step again)."""
        if self._hook is not None:
            self._hook.detach(self)
            self._hook = None

    def before(self, gradients):
        del gradients

    def after(self, gradients):
        def keep():
            for kept, variable in zip(self._kept, self.variables):
                gradient = gradients.get(id(variable))
                kept.assign(
                    tf.zeros(variable.shape, tf.float32)
                    if gradient is None
                    else tf.cast(tf.convert_to_tensor(gradient), tf.float32)
                )
            self._kept_step.assign(tf.cast(self.optimizer.iterations, tf.int64))
            return tf.constant(True)

        tf.cond(self._armed, keep, lambda: tf.constant(False))

    def __call__(self, variables=None):
        """P_t per variable of `variables` (default: every trainable one), as `preconditioner_of`.

        Raises:
            ValueError: where P needs the gradients and those of the latest
                update were not kept (a measurement off the callback's
                schedule, with such an optimizer).
        """
        variables = self.variables if variables is None else list(variables)
        if self._hook is None:
            return preconditioner_of(self.optimizer, variables)
        step = int(keras.ops.convert_to_numpy(self.optimizer.iterations))
        if step > 0 and int(self._kept_step.numpy()) != step:
            raise ValueError(
                f"P of {type(self.optimizer).__name__} is made of the latest gradient, which only the steps "
                f"before a scheduled measurement keep; step {step}'s was not kept. Measure on the callback's "
                "schedule (`every_n_steps`), or pass `preconditioner_of(optimizer, variables, gradients)` "
                "yourself."
            )
        kept = {id(v): k for v, k in zip(self.variables, self._kept)}
        gradients = [tf.convert_to_tensor(kept[id(v)]) for v in variables] if step > 0 else None
        return preconditioner_of(self.optimizer, variables, gradients)
