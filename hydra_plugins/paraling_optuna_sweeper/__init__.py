"""Hydra Sweeper plugin ``hydra/sweeper=paraling_optuna``: paraling's Optuna studies under ``paraling train -m``.

Usage::

    paraling train -m hydra/sweeper=paraling_optuna +sweep=demo corpus=csv corpus.path=data/tones/corpus.csv
    paraling train -m hydra/sweeper=paraling_optuna +sweep=demo hydra.sweeper.n_jobs=2 hydra/launcher=joblib

The engine lives in :mod:`paraling.search.hydra_sweeper`; this package only registers the plugin and its config
(importing it stays cheap because Hydra imports every plugin module at start-up).
"""
