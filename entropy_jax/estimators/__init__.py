"""Chapter 1: categorical estimators, NumPyro priors and their Bayes risk under forward KL."""

from entropy_jax.estimators.bayes import (
    dirichlet_mixture_posterior_mean,
    dirichlet_posterior_mean,
    posterior_mean,
)
from entropy_jax.estimators.frequency import regularized_ml, uniform
from entropy_jax.estimators.maxent import (
    MaxEntFit,
    gibbs,
    maxent_first_moment,
    maxent_moments,
    maxent_shrunk,
    maxent_two_moments,
    solve_beta,
)
from entropy_jax.estimators.priors import (
    bump_valley_mixture,
    dirichlet,
    dirichlet_mixture,
    expected_kl_to_uniform,
    mean_concentration,
    mixture_params,
    ordered_mixture,
    symmetric_dirichlet,
)
from entropy_jax.estimators.risk import (
    RiskEstimate,
    RiskProfile,
    baseline_risk,
    bayes_risk,
    monte_carlo,
    risk_profile,
)
from entropy_jax.estimators.sampling import sample_counts

__all__ = [
    "MaxEntFit",
    "RiskEstimate",
    "RiskProfile",
    "baseline_risk",
    "bayes_risk",
    "bump_valley_mixture",
    "dirichlet",
    "dirichlet_mixture",
    "dirichlet_mixture_posterior_mean",
    "dirichlet_posterior_mean",
    "expected_kl_to_uniform",
    "gibbs",
    "maxent_first_moment",
    "maxent_moments",
    "maxent_shrunk",
    "maxent_two_moments",
    "mean_concentration",
    "mixture_params",
    "monte_carlo",
    "ordered_mixture",
    "posterior_mean",
    "regularized_ml",
    "risk_profile",
    "sample_counts",
    "solve_beta",
    "symmetric_dirichlet",
    "uniform",
]
