"""From window posteriors to numbers: voting estimators, their saved state, metrics, out-of-fold scores."""
