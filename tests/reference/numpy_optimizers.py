"""Independent NumPy implementations of the published update rules, in float64.

Written from the papers' update rules, not from the package: each class keeps its own
state in NumPy arrays and exposes `step(params, grads, learning_rate)` (which
returns the new parameters) and `preconditioner(i)`, the P_t the most recent
step divided the momentum `momentum(i)` by.
"""

import numpy as np


class Reference:
    def __init__(self, shapes):
        self.t = 0
        self.shapes = shapes

    def step(self, params, grads, learning_rate):
        self.t += 1
        return [p - learning_rate * u for p, u in zip(params, self.updates([np.asarray(g, np.float64) for g in grads]))]


def _zeros(shapes):
    return [np.zeros(s) for s in shapes]


class ACClip(Reference):
    """m = β1 m + (1-β1) g; a = β2 a + (1-β2)|g|^α; τ = a^(1/α); u = min(τ/(|m|+ε), 1) m."""

    def __init__(self, shapes, beta_1=0.9, beta_2=0.99, epsilon=1e-5, alpha=1.0):
        super().__init__(shapes)
        self.b1, self.b2, self.eps, self.alpha = beta_1, beta_2, epsilon, alpha
        self.m, self.a = _zeros(shapes), _zeros(shapes)

    def updates(self, grads):
        out = []
        for i, g in enumerate(grads):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.a[i] = self.b2 * self.a[i] + (1 - self.b2) * np.abs(g) ** self.alpha
            tau = self.a[i] ** (1 / self.alpha)
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(np.minimum(tau / (np.abs(self.m[i]) + self.eps), 1.0) * self.m[i])
        return out

    def momentum(self, i):
        return self.m[i]

    def preconditioner(self, i):
        tau = self.a[i] ** (1 / self.alpha)
        return np.maximum((np.abs(self.m[i]) + self.eps) / tau, 1.0)


class CClip(Reference):
    def __init__(self, shapes, beta_1=0.9, threshold=1.0):
        super().__init__(shapes)
        self.b1, self.threshold = beta_1, threshold
        self.m = _zeros(shapes)

    def tau(self):
        """τ_k of step k = t (Algorithm 1 counts k = 1, 2, ...)."""
        return self.threshold(self.t) if callable(self.threshold) else self.threshold

    def updates(self, grads):
        out = []
        for i, g in enumerate(grads):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            out.append(np.minimum(self.tau() / np.abs(self.m[i]), 1.0) * self.m[i])
        return out

    def momentum(self, i):
        return self.m[i]

    def preconditioner(self, i):
        return np.maximum(np.abs(self.m[i]) / self.tau(), 1.0)


class GClip(CClip):
    def norm(self):
        return np.sqrt(sum(np.sum(m**2) for m in self.m))

    def updates(self, grads):
        for i, g in enumerate(grads):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
        scale = min(self.tau() / self.norm(), 1.0)
        return [scale * m for m in self.m]

    def preconditioner(self, i):
        return np.full(self.shapes[i], max(self.norm() / self.tau(), 1.0))


class RAdam(Reference):
    """Algorithm 2 of the RAdam paper, ε on the bias-corrected sqrt(v̂)."""

    def __init__(
        self, shapes, beta_1=0.9, beta_2=0.999, epsilon=1e-8, rectification_threshold=5.0, degenerated_to_sgd=True
    ):
        super().__init__(shapes)
        self.b1, self.b2, self.eps = beta_1, beta_2, epsilon
        self.threshold, self.degenerate = rectification_threshold, degenerated_to_sgd
        self.m, self.v = _zeros(shapes), _zeros(shapes)

    def rho(self):
        rho_inf = 2 / (1 - self.b2) - 1
        t = self.t
        return rho_inf, rho_inf - 2 * t * self.b2**t / (1 - self.b2**t)

    def rectifier(self):
        rho_inf, rho = self.rho()
        return np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))

    def updates(self, grads):
        out = []
        _, rho = self.rho()
        for i, g in enumerate(grads):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g**2
            m_hat = self.m[i] / (1 - self.b1**self.t)
            if rho > self.threshold:
                v_hat = np.sqrt(self.v[i] / (1 - self.b2**self.t))
                out.append(self.rectifier() * m_hat / (v_hat + self.eps))
            elif self.degenerate:
                out.append(m_hat)
            else:
                out.append(np.zeros_like(g))
        return out

    def momentum(self, i):
        return self.m[i]

    def preconditioner(self, i):
        _, rho = self.rho()
        c1 = 1 - self.b1**self.t
        if rho > self.threshold:
            return c1 * (np.sqrt(self.v[i] / (1 - self.b2**self.t)) + self.eps) / self.rectifier()
        return np.full(self.shapes[i], c1 if self.degenerate else np.inf)


class SSD(Reference):
    def __init__(self, shapes):
        super().__init__(shapes)
        self.g = _zeros(shapes)

    def updates(self, grads):
        self.g = list(grads)
        return [np.sign(g) for g in grads]

    def momentum(self, i):
        return self.g[i]

    def preconditioner(self, i):
        return np.abs(self.g[i])


class MSSD(Reference):
    def __init__(self, shapes, beta=0.9):
        super().__init__(shapes)
        self.beta = beta
        self.m = _zeros(shapes)

    def updates(self, grads):
        for i, g in enumerate(grads):
            self.m[i] = self.beta * self.m[i] + (1 - self.beta) * g
        return [np.sign(m) for m in self.m]

    def momentum(self, i):
        return self.m[i]

    def preconditioner(self, i):
        return np.abs(self.m[i])


class MSVAG(Reference):
    """Balles & Hennig (2018), with the lballes/msvag conventions: ρ ≤ 0.9999, γ ∈ [0, 1], NaN → 0."""

    momentum_variant = True

    def __init__(self, shapes, beta=0.9):
        super().__init__(shapes)
        self.beta = beta
        self.m_tilde, self.v_tilde = _zeros(shapes), _zeros(shapes)
        self.g = _zeros(shapes)

    def factor(self, i):
        b, t = self.beta, self.t
        m = self.m_tilde[i] / (1 - b**t)
        v = self.v_tilde[i] / (1 - b**t)
        rho = min((1 - b) * (1 + b**t) / ((1 + b) * (1 - b**t)), 0.9999)
        s = (v - m**2) / (1 - rho)
        weight = rho if self.momentum_variant else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.clip(m**2 / (m**2 + weight * s), 0.0, 1.0)
        return np.where(np.isnan(gamma), 0.0, gamma), m

    def updates(self, grads):
        out = []
        self.g = list(grads)
        for i, g in enumerate(grads):
            self.m_tilde[i] = self.beta * self.m_tilde[i] + (1 - self.beta) * g
            self.v_tilde[i] = self.beta * self.v_tilde[i] + (1 - self.beta) * g**2
            gamma, m = self.factor(i)
            out.append(gamma * (m if self.momentum_variant else g))
        return out

    def momentum(self, i):
        return self.m_tilde[i] if self.momentum_variant else self.g[i]

    def preconditioner(self, i):
        gamma, _ = self.factor(i)
        scale = (1 - self.beta**self.t) if self.momentum_variant else 1.0
        with np.errstate(divide="ignore"):
            return scale / gamma


class SVAG(MSVAG):
    momentum_variant = False
