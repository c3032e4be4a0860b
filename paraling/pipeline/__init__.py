"""Tracked cross-validation: the data set up front, the fold loop, its runners (CNN, baselines, embeddings), the
experiment dispatch and pre-training. Reports over tracked runs are :mod:`paraling.report`."""
