"""Fitting a network: the loop, its step runners, devices and precision, memory, checkpoint locks."""
