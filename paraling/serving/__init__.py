"""Using trained models: prediction on new audio, ensemble bundles, prediction tables, explanations."""
