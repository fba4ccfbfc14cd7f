"""Independent float64 NumPy references for the Adam family and its relatives.

Written from the published update rules (Cohen et al. 2022, §2 and App. A; Kingma &
Ba 2014; Reddi et al. 2018; Chen & Gu 2018 (Padam); Dozat 2016 (Nadam); Duchi et al.
2011 (Adagrad); Shazeer & Stern 2018 (Adafactor); Ziyin et al. (LaProp, as in Eq. 1-4
of Zhang & Ziyin 2021)), not from the package. Same interface as
`numpy_optimizers`: `step(params, grads, learning_rate)` returns the new parameters
p - lr·u, and for every variable i the most recent step equals
-lr · momentum(i) / preconditioner(i).
"""

import numpy as np

from tests.reference.numpy_optimizers import Reference, _zeros


class Adam(Reference):
    """m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²; ν = v (or running max of v with AMSGrad).

    P = (1-β1^t)(sqrt(ν/(1-β2^t)) + ε) with bias correction, else sqrt(ν) + ε; u = m / P.
    """

    def __init__(self, shapes, beta_1=0.9, beta_2=0.999, epsilon=1e-8, bias_correction=True, amsgrad=False):
        super().__init__(shapes)
        self.b1, self.b2, self.eps = beta_1, beta_2, epsilon
        self.bias_correction, self.amsgrad = bias_correction, amsgrad
        self.m, self.v, self.vmax = _zeros(shapes), _zeros(shapes), _zeros(shapes)

    def root(self, x):
        return np.sqrt(x)

    def nu(self, i):
        return self.vmax[i] if self.amsgrad else self.v[i]

    def update_moments(self, i, g):
        self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
        self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g**2
        if self.amsgrad:
            self.vmax[i] = np.maximum(self.vmax[i], self.v[i])

    def updates(self, grads):
        out = []
        for i, g in enumerate(grads):
            self.update_moments(i, g)
            out.append(self.m[i] / self.preconditioner(i))
        return out

    def momentum(self, i):
        return self.m[i]

    def preconditioner(self, i):
        if self.bias_correction:
            c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
            return c1 * (self.root(self.nu(i) / c2) + self.eps)
        return self.root(self.nu(i)) + self.eps


class Padam(Adam):
    """Adam/AMSGrad with sqrt replaced by the power `partial` (p ∈ (0, 1/2])."""

    def __init__(
        self, shapes, beta_1=0.9, beta_2=0.999, epsilon=1e-8, partial=0.25, bias_correction=False, amsgrad=True
    ):
        super().__init__(
            shapes, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, bias_correction=bias_correction, amsgrad=amsgrad
        )
        self.partial = partial

    def root(self, x):
        return x**self.partial


class Nadam(Adam):
    """Adam's m, v and P; Nesterov direction d = β1 m_t + (1-β1) g_t; u = d / P."""

    def __init__(self, shapes, beta_1=0.9, beta_2=0.999, epsilon=1e-8, bias_correction=True):
        super().__init__(
            shapes, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, bias_correction=bias_correction, amsgrad=False
        )
        self.d = _zeros(shapes)

    def updates(self, grads):
        out = []
        for i, g in enumerate(grads):
            self.update_moments(i, g)
            self.d[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            out.append(self.d[i] / self.preconditioner(i))
        return out

    def momentum(self, i):
        return self.d[i]


class RMSProp(Reference):
    """ν = β2 ν + (1-β2) g²; P = sqrt(ν) + ε; u = g / P."""

    def __init__(self, shapes, beta_2=0.9, epsilon=1e-7):
        super().__init__(shapes)
        self.b2, self.eps = beta_2, epsilon
        self.nu, self.g = _zeros(shapes), _zeros(shapes)

    def updates(self, grads):
        out = []
        for i, g in enumerate(grads):
            self.g[i] = g
            self.nu[i] = self.b2 * self.nu[i] + (1 - self.b2) * g**2
            out.append(g / self.preconditioner(i))
        return out

    def momentum(self, i):
        return self.g[i]

    def preconditioner(self, i):
        return np.sqrt(self.nu[i]) + self.eps


class Adagrad(Reference):
    """A = A + g² (A_0 = initial_accumulator_value); P = sqrt(A) + ε; u = g / P."""

    def __init__(self, shapes, epsilon=1e-7, initial_accumulator_value=0.0):
        super().__init__(shapes)
        self.eps = epsilon
        self.acc = [np.full(s, float(initial_accumulator_value)) for s in shapes]
        self.g = _zeros(shapes)

    def updates(self, grads):
        out = []
        for i, g in enumerate(grads):
            self.g[i] = g
            self.acc[i] = self.acc[i] + g**2
            out.append(g / self.preconditioner(i))
        return out

    def momentum(self, i):
        return self.g[i]

    def preconditioner(self, i):
        return np.sqrt(self.acc[i]) + self.eps


class Adafactor(Reference):
    """Shazeer & Stern (2018), Alg. 4-5, with optional first moment.

    β̂2_t = 1 - t^(-decay_rate); G2 = g² + ε1. Rank ≥ 2 variables are factored over their
    last two axes (row/column EMAs R, C; V̂ = R Cᵀ / mean(R)); rank < 2 variables keep
    an unfactored EMA V̂. S = sqrt(V̂) + ε; c = max(1, RMS(g / S) / d) (c = 1 when
    clip_threshold is None); P = c·S; m = β1 m + (1-β1) g; u = m / P.
    """

    def __init__(self, shapes, beta_1=0.0, decay_rate=0.8, epsilon_1=1e-30, epsilon=0.0, clip_threshold=1.0):
        super().__init__(shapes)
        self.b1, self.decay, self.eps1, self.eps = beta_1, decay_rate, epsilon_1, epsilon
        self.clip = clip_threshold
        self.factored = [len(s) >= 2 for s in shapes]
        self.r = [np.zeros(s[:-1]) if f else None for s, f in zip(shapes, self.factored)]
        self.c = [np.zeros(s[:-2] + s[-1:]) if f else None for s, f in zip(shapes, self.factored)]
        self.v = [None if f else np.zeros(s) for s, f in zip(shapes, self.factored)]
        self.m = _zeros(shapes)
        self.p = [np.ones(s) for s in shapes]

    def v_hat(self, i):
        if self.factored[i]:
            r, c = self.r[i], self.c[i]
            return r[..., :, None] * c[..., None, :] / np.mean(r, axis=-1)[..., None, None]
        return self.v[i]

    def updates(self, grads):
        out = []
        beta_2 = 1 - self.t ** (-self.decay)
        for i, g in enumerate(grads):
            g2 = g**2 + self.eps1
            if self.factored[i]:
                self.r[i] = beta_2 * self.r[i] + (1 - beta_2) * np.mean(g2, axis=-1)
                self.c[i] = beta_2 * self.c[i] + (1 - beta_2) * np.mean(g2, axis=-2)
            else:
                self.v[i] = beta_2 * self.v[i] + (1 - beta_2) * g2
            s = np.sqrt(self.v_hat(i)) + self.eps
            if self.clip is not None:
                rms = np.sqrt(np.mean((g / s) ** 2))
                scale = max(1.0, rms / self.clip)
            else:
                scale = 1.0
            self.p[i] = scale * s
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            out.append(self.m[i] / self.p[i])
        return out

    def momentum(self, i):
        return self.m[i]

    def preconditioner(self, i):
        return self.p[i]


class LaProp(Reference):
    """Ziyin et al., Eq. 1-4: n = β2 n + (1-β2) g²; m = β1 m + (1-β1) g / (sqrt(n/c_n) + ε);
    u = m / c_m (c_n = 1-β2^t, c_m = 1-β1^t with bias correction, else 1).

    Protocol: P = c_m · S with S the latest divisor sqrt(n/c_n) + ε, and momentum(i) = u·P,
    so that step = -lr·momentum/P by construction; the LaProp momentum itself is
    `preconditioned_momentum(i)`.
    """

    def __init__(self, shapes, beta_1=0.9, beta_2=0.999, epsilon=1e-15, bias_correction=True):
        super().__init__(shapes)
        self.b1, self.b2, self.eps = beta_1, beta_2, epsilon
        self.bias_correction = bias_correction
        self.m, self.v = _zeros(shapes), _zeros(shapes)
        self.u, self.p = _zeros(shapes), [np.ones(s) for s in shapes]

    def updates(self, grads):
        out = []
        c1 = 1 - self.b1**self.t if self.bias_correction else 1.0
        c2 = 1 - self.b2**self.t if self.bias_correction else 1.0
        for i, g in enumerate(grads):
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g**2
            s = np.sqrt(self.v[i] / c2) + self.eps
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g / s
            self.u[i] = self.m[i] / c1
            self.p[i] = c1 * s
            out.append(self.u[i])
        return out

    def momentum(self, i):
        return self.u[i] * self.p[i]

    def preconditioned_momentum(self, i):
        return self.m[i]

    def preconditioner(self, i):
        return self.p[i]


class HeavyBall(Reference):
    """m = μ m + c g (c = 1-μ if ema else 1); u = m; P = 1."""

    def __init__(self, shapes, momentum=0.9, ema=True):
        super().__init__(shapes)
        self.mu = momentum
        self.coef = (1 - momentum) if ema else 1.0
        self.m, self.u = _zeros(shapes), _zeros(shapes)

    def direction(self, i, g):
        return self.m[i]

    def updates(self, grads):
        for i, g in enumerate(grads):
            self.m[i] = self.mu * self.m[i] + self.coef * g
            self.u[i] = self.direction(i, g)
        return list(self.u)

    def momentum(self, i):
        return self.u[i]

    def preconditioner(self, i):
        return np.ones(self.shapes[i])


class Nesterov(HeavyBall):
    """m = μ m + c g; u = μ m + c g (m already updated); P = 1."""

    def direction(self, i, g):
        return self.mu * self.m[i] + self.coef * g


class FrozenAdam(Reference):
    """EMA heavy ball divided by a fixed preconditioner: P = P_frozen + ε; u = m / P."""

    def __init__(self, shapes, preconditioner, beta_1=0.9, epsilon=0.0):
        super().__init__(shapes)
        self.b1, self.eps = beta_1, epsilon
        self.frozen = [np.asarray(p, np.float64) for p in preconditioner]
        self.m = _zeros(shapes)

    def updates(self, grads):
        out = []
        for i, g in enumerate(grads):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            out.append(self.m[i] / self.preconditioner(i))
        return out

    def momentum(self, i):
        return self.m[i]

    def preconditioner(self, i):
        return self.frozen[i] + self.eps
