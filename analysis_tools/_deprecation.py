"""Old names of the public API, accepted for one release with a `DeprecationWarning`.

The vocabulary: `tolerance` (not `tol`); `num_products` for a count of
matrix-vector products (`num_vectors` for SLQ's start vectors); `estimator=`
for the choice of a statistical estimator and `differentiation=` for the
autodiff mode of a curvature product (not three meanings of `method`). Every
renamed keyword, attribute and constant goes through this module, so that the
message and the rule are in one place:

* `renamed(old=new, ...)`: a decorator for a function or an ``__init__``; an
  old keyword is passed on as the new one. The signature shows the new names
  only (`functools.wraps`).
* `renamed_attribute(old, new)`: a read-only property that reads the new attribute.
* `renamed_constants(namespace, old=new, ...)`: a module ``__getattr__`` that
  serves a module's old constant names.

Each use warns "`old` is deprecated; use `new`.", attributed to the first
caller outside `analysis_tools` (the user's line, however deep inside the
package the old name is read), so that Python's default filters show it
where that line is in ``__main__`` (a script, a notebook).
"""

import functools
import sys
import warnings

_PACKAGE = __name__.split(".")[0]


def _outside_stacklevel():
    """The `stacklevel`, for `warnings.warn` in the caller of this function, of the first frame outside the package."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == _PACKAGE:
        frame, level = frame.f_back, level + 1
    return level


def warn_renamed(old, new):
    """Warns that the name `old` is deprecated in favor of `new`."""
    warnings.warn(f"`{old}` is deprecated; use `{new}`.", DeprecationWarning, stacklevel=_outside_stacklevel())


def renamed(**new_names):
    """Decorator: the keyword ``old=value`` is taken as ``new=value``, with a `DeprecationWarning`.

    A call that passes an old keyword together with its new one raises a
    `TypeError`.

    Args:
        **new_names: old keyword → new keyword (several old names may map
            to one new name).
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in new_names.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{function.__qualname__}() got both `{old}` and `{new}`: `{old}` "
                            f"is the deprecated name of `{new}`; pass `{new}` only."
                        )
                    warn_renamed(old, new)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate


def renamed_attribute(old, new):
    """A read-only property `old` that returns the attribute `new`, with a `DeprecationWarning`."""

    def getter(self):
        warn_renamed(old, new)
        return getattr(self, new)

    return property(getter, doc=f"Deprecated: `{new}`.")


def renamed_constants(namespace, **new_names):
    """A module ``__getattr__`` serving each old constant name (old → new) from `namespace`, with a warning.

    Use as ``__getattr__ = renamed_constants(globals(), METHODS="ESTIMATORS")``.
    """

    def __getattr__(name):
        if name not in new_names:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        warn_renamed(name, new_names[name])
        return namespace[new_names[name]]

    return __getattr__
