"""Tracked cross-validation: the data set up front, the fold loop, its runners, pre-training and reports."""
