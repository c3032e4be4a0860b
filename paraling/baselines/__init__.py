"""Utterance-level baselines on the CNN's speaker folds: openSMILE ComParE / log-mel statistics features and SVM,
random forest, dropout DNN or logistic regression, tracked like CNN runs (see :mod:`paraling.baselines.run`)."""

from paraling.baselines.features import ComParEFunctionals, logmel_stats, utterance_features
from paraling.baselines.models import DropoutDNN, GroupedGridClassifier, make_estimator
from paraling.baselines.run import run_baseline

__all__ = [
    "ComParEFunctionals",
    "DropoutDNN",
    "GroupedGridClassifier",
    "logmel_stats",
    "make_estimator",
    "run_baseline",
    "utterance_features",
]
