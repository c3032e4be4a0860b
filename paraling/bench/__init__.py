"""Benchmarks that print paraling's number, a naive baseline measured in the same run, and their ratio.

Run with ``paraling bench [--quick] [--json PATH] [--mlflow]``; see ``bench/README.md``.
"""
