"""Priors over categorical distributions q = (q_1, …, q_n), as NumPyro distributions.

Every prior here is either a `numpyro.distributions.Dirichlet` or a
`MixtureSameFamily(Categorical, Dirichlet)`; `mixture_params` reads both as a Dirichlet mixture
(log-weights, concentrations), which is the form the Bayes estimators and the closed-form
baseline use.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import digamma

from entropy_jax import _validate

__all__ = [
    "DirichletMixture",
    "bump_valley_mixture",
    "dirichlet",
    "dirichlet_mixture",
    "expected_kl_to_uniform",
    "linear_ramp",
    "mean_concentration",
    "mixture_params",
    "ordered_mixture",
    "symmetric_dirichlet",
]


class DirichletMixture(NamedTuple):
    """A prior Σ_c w_c Dir(α_c) in array form.

    Attributes:
      log_weights: (C,) log mixture weights, normalised.
      alphas: (C, n) concentrations, all > 0.
    """

    log_weights: jax.Array
    alphas: jax.Array


def symmetric_dirichlet(alpha: float, n: int) -> dist.Dirichlet:
    """Dir(α, …, α) over n outcomes; large α gives near-uniform worlds, small α sparse ones."""
    if int(n) < 2:
        raise ValueError(f"`n` must be >= 2; got {n}.")
    _validate.positive("alpha", alpha)
    return dist.Dirichlet(jnp.full((int(n),), alpha, dtype=jnp.result_type(float)))


def dirichlet(alpha) -> dist.Dirichlet:
    """A general Dirichlet with concentration vector `alpha` of shape (n,)."""
    alpha = jnp.asarray(alpha, dtype=jnp.result_type(float))
    if alpha.ndim != 1 or alpha.shape[0] < 2:
        raise ValueError(f"`alpha` must be 1-D with n >= 2 entries; got shape {alpha.shape}.")
    _validate.positive("alpha", alpha)
    return dist.Dirichlet(alpha)


def dirichlet_mixture(weights, alphas) -> dist.MixtureSameFamily:
    """Σ_c weights_c Dir(alphas_c) with `weights` (C,) summing to one and `alphas` (C, n)."""
    if _validate.is_concrete((weights, alphas)):  # host arrays: no per-op device compilation
        weights, alphas = np.asarray(weights, np.float64), np.asarray(alphas, np.float64)
    if np.ndim(alphas) != 2 or np.shape(alphas)[1] < 2:
        raise ValueError(f"`alphas` must have shape (C, n) with n >= 2; got {alphas.shape}.")
    if np.shape(weights) != (np.shape(alphas)[0],):
        raise ValueError(
            f"shape mismatch: `weights` has shape {weights.shape} but `alphas` has "
            f"{alphas.shape[0]} components."
        )
    _validate.positive("alphas", alphas)
    _validate.positive("weights", weights, allow_zero=True)
    if _validate.is_concrete(weights) and not np.isclose(float(np.sum(weights)), 1.0):
        raise ValueError(f"`weights` must sum to 1; got {float(np.sum(weights))}.")
    dtype = jnp.result_type(float)
    return dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.asarray(weights, dtype)), dist.Dirichlet(jnp.asarray(alphas, dtype))
    )


def linear_ramp(n: int, alpha0: float, eps: float) -> jax.Array:
    """a_k = α0 + ε (k − 1), k = 1..n: concentrations increasing linearly along the outcomes."""
    if int(n) < 2:
        raise ValueError(f"`n` must be >= 2; got {n}.")
    _validate.positive("alpha0", alpha0)
    _validate.positive("eps", eps, allow_zero=True)
    return jnp.asarray(alpha0 + eps * np.arange(int(n)), dtype=jnp.result_type(float))


def ordered_mixture(n: int = 60, alpha0: float = 0.3, eps: float = 1.1) -> dist.MixtureSameFamily:
    """The Table 1 prior: ½ Dir(a) + ½ Dir(reversed a) with a_k = α0 + ε (k − 1).

    One component favours q_1 < … < q_n, the other the reverse. Because a_k + a_{n+1-k} is
    constant and both components have the same total A, the prior mean is exactly uniform,
    ⟨q_k⟩ = 1/n, while the ordering of q is strongly correlated with the ordering of z. With the
    defaults (n = 60, α0 = 0.3, ε = 1.1) the data-free baseline ⟨K[q, 1/n]⟩ is 0.2116 nats.
    """
    a = np.asarray(linear_ramp(n, alpha0, eps))
    return dirichlet_mixture(np.array([0.5, 0.5]), np.stack([a, a[::-1]]))


def bump_valley_mixture(n: int = 60, alpha0: float = 0.3, eps: float = 40.0) -> dist.MixtureSameFamily:
    """½ Dir(α0 + ε(1 − g)) + ½ Dir(α0 + ε g), g_k = ((k − (n+1)/2) / ((n−1)/2))² ∈ [0, 1].

    One component puts its mass in the middle of the ordered outcomes, the other at both ends:
    structure that a first moment cannot see (both components are symmetric about the centre)
    but a second moment can. Used to show when the second-moment constraint pays.
    """
    if int(n) < 3:
        raise ValueError(f"`n` must be >= 3; got {n}.")
    _validate.positive("alpha0", alpha0)
    _validate.positive("eps", eps, allow_zero=True)
    k = np.arange(int(n), dtype=np.float64)
    g = ((k - (n - 1) / 2) / ((n - 1) / 2)) ** 2
    return dirichlet_mixture(
        np.array([0.5, 0.5]), np.stack([alpha0 + eps * (1.0 - g), alpha0 + eps * g])
    )


def mixture_params(prior) -> DirichletMixture:
    """Reads a Dirichlet or a Dirichlet mixture (NumPyro) as a `DirichletMixture`."""
    if isinstance(prior, dist.Dirichlet):
        alphas = jnp.asarray(prior.concentration)[None, :]
        return DirichletMixture(jnp.zeros((1,), alphas.dtype), alphas)
    if isinstance(prior, dist.MixtureSameFamily) and isinstance(
        prior.component_distribution, dist.Dirichlet
    ):
        mixing = prior.mixing_distribution
        log_w = jax.nn.log_softmax(jnp.asarray(mixing.logits))
        alphas = jnp.asarray(prior.component_distribution.concentration)
        return DirichletMixture(log_w.astype(alphas.dtype), alphas)
    raise ValueError(
        "`prior` must be a numpyro Dirichlet or MixtureSameFamily(Categorical, Dirichlet); "
        f"got {type(prior).__name__}."
    )


def mean_concentration(prior) -> jax.Array:
    """Σ_c w_c α_c, shape (n,): the single Dirichlet a misspecified Bayesian would use."""
    log_w, alphas = mixture_params(prior)
    return jnp.exp(log_w) @ alphas


@jax.jit
def expected_kl_to_uniform(prior) -> jax.Array:
    """Closed-form Bayes risk of the uniform estimator, ⟨K[q, 1/n]⟩ = ln n − ⟨H(q)⟩, in nats.

    Uses ⟨q_k ln q_k⟩ = (α_k / A)(ψ(α_k + 1) − ψ(A + 1)) under Dir(α), averaged over mixture
    components.
    """
    log_w, alphas = mixture_params(prior)
    total = alphas.sum(-1, keepdims=True)
    neg_h = jnp.sum(alphas / total * (digamma(alphas + 1.0) - digamma(total + 1.0)), axis=-1)
    return jnp.log(alphas.shape[-1]) + jnp.exp(log_w) @ neg_h
