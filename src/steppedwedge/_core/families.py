"""Link and family functions for GLMMs with the derivatives a Laplace approximation needs.

Everything works on arrays of *units* (cluster-period cells, or groups of rows with the
same covariates) with a count ``y`` out of ``n`` trials (binomial) or a count with the
exposure folded into the linear predictor as an offset (Poisson, negative binomial).
For a unit with linear predictor ``eta`` a family returns

* ``ll``  the log-likelihood *without* its data-only constant,
* ``s``   ``d ll / d eta``,
* ``w``   ``-d^2 ll / d eta^2`` (the observed information; equal to the IRLS weight for
  canonical links),
* ``w1``  ``d w / d eta`` (needed for the exact gradient of the Laplace approximation).

Non-canonical links combine the family's derivatives in ``mu`` with the link's
``d^k mu / d eta^k`` by the chain rule.  Numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

__all__ = ["LINKS", "FAMILY_LINKS", "Family", "make_family", "log_constant"]

FloatArray = np.ndarray

#: Links each family accepts (the first is the default).
FAMILY_LINKS: dict[str, tuple[str, ...]] = {
    "binomial": ("logit", "probit", "cloglog", "log", "identity"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
}
LINKS = ("logit", "probit", "cloglog", "log", "identity")


def _inverse_link(link: str, eta: FloatArray) -> tuple[FloatArray, ...]:
    """``(mu, 1 - mu, mu', mu'', mu''')`` with derivatives w.r.t. ``eta``."""
    if link == "logit":
        mu = special.expit(eta)
        muc = special.expit(-eta)
        m1 = mu * muc
        m2 = m1 * (muc - mu)
        m3 = m1 * (1.0 - 6.0 * m1)
        return mu, muc, m1, m2, m3
    if link == "probit":
        mu = special.ndtr(eta)
        muc = special.ndtr(-eta)
        phi = np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)
        return mu, muc, phi, -eta * phi, (eta * eta - 1.0) * phi
    if link == "cloglog":
        ee = np.exp(eta)
        muc = np.exp(-ee)
        mu = -np.expm1(-ee)
        m1 = ee * muc
        return mu, muc, m1, m1 * (1.0 - ee), m1 * ((1.0 - ee) ** 2 - ee)
    if link == "log":
        mu = np.exp(eta)
        return mu, -np.expm1(eta), mu, mu, mu
    if link == "identity":
        one = np.ones_like(eta)
        zero = np.zeros_like(eta)
        return eta, 1.0 - eta, one, zero, zero
    raise ValueError(f"unknown link {link!r}")


@dataclass(frozen=True)
class Family:
    """A GLM family with a link: log-likelihood pieces per unit.

    ``dispersion`` families (negative binomial) take a log-dispersion ``alpha``
    (``log`` of the NB2 size ``k``: variance ``mu + mu^2 / k``).
    """

    name: str
    link: str

    @property
    def has_dispersion(self) -> bool:
        """True for the negative binomial (a size parameter is estimated)."""
        return self.name == "negative_binomial"

    @property
    def canonical(self) -> bool:
        """True for the canonical link (binomial-logit, Poisson-log)."""
        return (self.name, self.link) in (("binomial", "logit"), ("poisson", "log"))

    def mean(self, eta: FloatArray) -> FloatArray:
        """Inverse link."""
        return _inverse_link(self.link, eta)[0]

    def valid(self, eta: FloatArray) -> bool:
        """Whether every mean lies inside the family's parameter space."""
        if self.name == "binomial" and self.link in ("log", "identity"):
            mu, muc = _inverse_link(self.link, eta)[:2]
            return bool(np.all(mu > 0) and np.all(muc > 0))
        return bool(np.all(np.isfinite(eta)))

    def derivs(
        self, y: FloatArray, n: FloatArray, eta: FloatArray, alpha: Any = 0.0, order: int = 3
    ) -> tuple[FloatArray, ...]:
        """``(ll, s, w, w1)`` per unit (``w1`` only when ``order == 3``).

        ``n`` is the number of trials (binomial) and ignored otherwise.
        """
        if self.name == "poisson":
            mu = np.exp(eta)
            ll = y * eta - mu
            return ll, y - mu, mu, mu
        if self.name == "negative_binomial":
            k = np.exp(alpha)
            mu = np.exp(eta)
            # log(k + mu) stably; ll = y log mu + k log k - (y + k) log(k + mu) + lgamma terms
            lkm = np.logaddexp(alpha, eta)
            # ll = log G(y+k) - log G(k) + y eta + k alpha - (y+k) log(k+mu), rearranged so that
            # nothing cancels for large k: D(y, k) + y eta - (y+k) log1p(mu/k)
            ll = _lgamma_ratio(y, k) + y * eta - (y + k) * np.log1p(np.exp(eta - alpha))
            r = np.exp(eta - lkm)  # mu / (k + mu)
            q = np.exp(alpha - lkm)  # k / (k + mu)
            s = (y - mu) * q
            w = (y + k) * r * q
            w1 = w * (q - r)
            return ll, s, w, w1
        # binomial
        if self.link == "logit":
            lmu = -np.logaddexp(0.0, -eta)
            lmuc = -np.logaddexp(0.0, eta)
            ll = y * lmu + (n - y) * lmuc
            mu = np.exp(lmu)
            muc = np.exp(lmuc)
            v = mu * muc
            return ll, y - n * mu, n * v, n * v * (muc - mu)
        mu, muc, m1, m2, m3 = _inverse_link(self.link, eta)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.link == "probit":
                lmu = special.log_ndtr(eta)
                lmuc = special.log_ndtr(-eta)
            else:
                lmu = np.log(mu)
                lmuc = np.log(muc)
            ll = np.where(y > 0, y * lmu, 0.0) + np.where(n - y > 0, (n - y) * lmuc, 0.0)
            # d ll / d mu ... as ratios m_k / mu, m_k / (1 - mu) (stable for probit tails)
            a1 = m1 / mu
            b1 = m1 / muc
            if self.link == "probit":
                a1 = np.exp(-0.5 * eta * eta - 0.5 * np.log(2.0 * np.pi) - lmu)
                b1 = np.exp(-0.5 * eta * eta - 0.5 * np.log(2.0 * np.pi) - lmuc)
            f = n - y
            s = y * a1 - f * b1
            # d2 ll/deta2 = l2 m1^2 + l1 m2, with l1 = y/mu - f/muc, l2 = -y/mu^2 - f/muc^2
            r2 = m2 / m1 if self.link != "identity" else np.zeros_like(eta)
            d2 = -y * a1 * a1 - f * b1 * b1 + s * r2
            r3 = m3 / m1 if self.link != "identity" else np.zeros_like(eta)
            # l3 m1^3 + 3 l2 m1 m2 + l1 m3
            d3 = (
                (2.0 * y * a1**3 - 2.0 * f * b1**3)
                + 3.0 * (-y * a1 * a1 - f * b1 * b1) * r2
                + s * r3
            )
        return ll, s, -d2, -d3

    def dalpha(self, y: FloatArray, eta: FloatArray, alpha: Any) -> tuple[FloatArray, ...]:
        """NB2: ``(d ll, d s, d w)`` w.r.t. ``alpha = log k`` at fixed ``eta``."""
        k = np.exp(alpha)
        mu = np.exp(eta)
        lkm = np.logaddexp(alpha, eta)
        r = np.exp(eta - lkm)
        dll_dk = (
            special.digamma(y + k) - special.digamma(k) + alpha + 1.0 - lkm - (y + k) / (k + mu)
        )
        ds_dk = (y - mu) * r / (k + mu)
        dw_dk = r * (y * mu + 2.0 * k * mu - k * y) / (k + mu) ** 2
        return k * dll_dk, k * ds_dk, k * dw_dk


def _lgamma_ratio(y: FloatArray, k: Any) -> FloatArray:
    """``log G(y + k) - log G(k) - y log k`` without cancellation for large ``k``.

    Direct differences for ``k < 1e3``; for larger ``k`` Stirling's series,
    ``(k + y - 1/2) log1p(y/k) - y`` plus the ``1/(12x)`` and ``1/(360x^3)`` corrections
    (truncation error below ``1e-15`` there).
    """
    y = np.asarray(y, dtype=float)
    k = np.asarray(k, dtype=float)
    small = k < 1e3
    ks = np.where(small, k, 1.0)
    direct = special.gammaln(y + ks) - special.gammaln(ks) - y * np.log(ks)
    kl = np.where(small, 1e3, k)
    kly = kl + y
    stirling = (
        (kly - 0.5) * np.log1p(y / kl)
        - y
        + (1.0 / kly - 1.0 / kl) / 12.0
        - (1.0 / kly**3 - 1.0 / kl**3) / 360.0
    )
    return np.asarray(np.where(small, direct, stirling))


def make_family(name: str, link: str | None = None) -> Family:
    """Return the :class:`Family` ``name`` with ``link`` (default: the canonical link).

    Examples
    --------
    >>> import numpy as np
    >>> fam = make_family("binomial")
    >>> ll, s, w, w1 = fam.derivs(np.array([3.0]), np.array([10.0]), np.array([0.0]))
    >>> float(s[0]), float(w[0])
    (-2.0, 2.5)
    """
    if name not in FAMILY_LINKS:
        raise ValueError(f"unknown family {name!r}")
    allowed = FAMILY_LINKS[name]
    link = allowed[0] if link is None else link
    if link not in allowed:
        raise ValueError(
            f"link {link!r} is not available for family {name!r}; use one of {list(allowed)}."
        )
    return Family(name, link)


def log_constant(
    family: str, y: FloatArray, n: FloatArray, binomial_coefficient: bool
) -> FloatArray:
    """Data-only part of the log-likelihood per row (``log choose(n, y)`` or ``-log y!``)."""
    if family == "binomial":
        if not binomial_coefficient:
            return np.zeros_like(y, dtype=float)
        out = special.gammaln(n + 1.0) - special.gammaln(y + 1.0) - special.gammaln(n - y + 1.0)
        return np.asarray(out, dtype=float)
    return np.asarray(-special.gammaln(y + 1.0), dtype=float)
