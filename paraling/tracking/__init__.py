"""MLflow: the store, run lifecycle, the model folder, the model registry, reading runs back, plots."""
