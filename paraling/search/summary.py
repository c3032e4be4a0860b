"""The end-of-sweep report: counts, best trial, how it stopped, and the one line a non-zero exit prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paraling.secrets import mask_secrets
from paraling.tracking.ui import open_line

__all__ = ["SweepSummary"]


@dataclass
class SweepSummary:
    """The end-of-sweep report."""

    study_name: str
    storage: str
    metric: str
    direction: str
    n_trials: int | None
    failure_budget: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    retried: int = 0
    running: int = 0
    waiting: int = 0
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_reproduce: str = ""
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    parent_run_link: str = ""  # the parent run's page in the UI (looked up once, by summarize)
    stopped: str = "complete"
    fail_reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the sweep ended normally (budget reached, timeout, or other machines still running) and some trial
        completed (a study whose every trial failed or was pruned has no result)."""
        if self.stopped == "others_running":
            return True
        return self.stopped in ("complete", "timeout") and self.complete > 0

    def error_line(self) -> str:
        """Why the sweep did not end normally, in one line (for a non-zero exit)."""
        reasons = "; ".join(self.fail_reasons[:3])
        if self.stopped == "failure_budget":
            return (
                f"study {self.study_name} stopped: {self.failed} trials failed, failure budget {self.failure_budget} "
                f"spent ({reasons})"
            )
        if self.stopped in ("complete", "timeout"):
            why = f": {reasons}" if reasons else ""
            return (
                f"study {self.study_name}: no trial completed ({self.failed} failed, {self.pruned} pruned){why}. Fix "
                "the cause, then raise --n-trials (the finished trials stay in the study) or start a new study with "
                "--study-name"
            )
        return f"study {self.study_name} is incomplete ({self.stopped}); re-run the command to resume"

    def format(self) -> str:
        """Human-readable summary lines."""
        total = f" of {self.n_trials}" if self.n_trials else ""
        lines = [
            "",
            f"paraling sweep: study {self.study_name}  (storage {self.storage})",
            f"  trials: {self.complete + self.pruned + self.failed}{total} finished: {self.complete} complete, "
            f"{self.pruned} pruned, {self.failed} failed"
            + (f", {self.retried} retried after a dead worker/Ctrl-C" if self.retried else "")
            + (f"; {self.running} running elsewhere" if self.running else "")
            + (f"; {self.waiting} queued" if self.waiting else ""),
        ]
        if self.best_number is not None:
            lines.append(f"  best: trial {self.best_number}, {self.metric} = {self.best_value:.4f} ({self.direction})")
            lines += [f"    {k} = {v}" for k, v in self.best_params.items()]
            lines.append(f"  reproduce: {self.best_reproduce}")
        else:
            lines.append("  best: none (no trial completed)")
        if self.fail_reasons:
            lines.append(
                "  failures: " + "; ".join(self.fail_reasons[:3]) + (" ..." if len(self.fail_reasons) > 3 else "")
            )
        if self.parent_run_id:
            lines.append(f"  MLflow parent run: {self.parent_run_id}")
            lines.append("  " + open_line(self.tracking_uri or "", self.parent_run_link))
        lines.append(f"  dashboard: optuna-dashboard {self.storage}")
        notes = {
            "timeout": "  stopped: timeout reached (re-run the command to continue)",
            "failure_budget": f"  stopped: {self.failed} trials failed (failure_budget={self.failure_budget}); fix the "
            "cause or raise failure_budget, then re-run to resume",
            "interrupted": "  interrupted: re-run the same command to resume",
            "workers_failed": "  stopped early: worker processes ended abnormally; re-run the same command to resume",
            "others_running": "  other workers are still running trials of this study",
        }
        if self.stopped in notes:
            lines.append(notes[self.stopped])
        return mask_secrets("\n".join(lines))
