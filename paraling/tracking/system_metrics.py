"""MLflow's system metrics (CPU, memory, disk, network; GPU utilisation and memory where a GPU and ``nvidia-ml-py``
exist) sampled during a training run: the run page's *System metrics* tab.

Switched by ``tracking.system_metrics`` (default on) every ``tracking.system_metrics_interval`` seconds, through
MLflow's own :class:`mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor`, which samples in a
background thread and logs ``system/...`` metrics to the run. GPU figures need ``pip install nvidia-ml-py``
(``paraling[gpu]``), which only makes sense on a machine with an NVIDIA GPU; without it the GPU figures are left
out. A monitor that cannot start is logged and never fails the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from paraling.secrets import mask_secrets

__all__ = ["system_metrics"]

log = logging.getLogger(__name__)


@contextmanager
def system_metrics(tracker: Any, enabled: bool = True, interval: float = 10.0) -> Iterator[None]:
    """Sample system metrics into ``tracker``'s run while the block runs.

    Args:
        tracker: A :class:`~paraling.tracking.tracker.RunTracker` (nothing happens when it is disabled).
        enabled: ``tracking.system_metrics``.
        interval: Seconds between samples (``tracking.system_metrics_interval``).
    """
    monitor = None
    if enabled and getattr(tracker, "enabled", False) and tracker.run_id:
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(
                tracker.run_id,
                sampling_interval=float(interval),
                samples_before_logging=1,
                resume_logging=bool(tracker.resumed),
                tracking_uri=tracker.uri,
            )
            monitor.start()
        except Exception as exc:  # psutil missing, an unusual platform: the run goes on without them
            log.warning("system metrics are off for this run: %s", mask_secrets(str(exc))[:300])
            monitor = None
    try:
        yield
    finally:
        if monitor is not None:
            try:
                monitor.finish()
            except Exception as exc:  # the store may be gone at the end; never mask the run's own outcome
                log.warning("could not stop the system-metrics monitor: %s", mask_secrets(str(exc))[:300])
