"""RunTracker: folder uploads keep their layout and go through MLflow's atomic single-file path."""

from __future__ import annotations

from pathlib import Path

from paraling.tracking.tracker import RunTracker


def test_log_artifact_uploads_a_folder_file_by_file(tmp_path: Path, mlflow_uri: str, monkeypatch) -> None:
    src = tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    tracker = RunTracker("unit", mlflow_uri)
    monkeypatch.setattr(tracker.client, "log_artifacts", None)  # the in-place folder copy must not be used
    tracker.log_artifact(src, "oof")
    tracker.log_artifact(src)
    tracker.end()
    root = tmp_path / "dl"
    root.mkdir()
    tracker.client.download_artifacts(tracker.run_id, "", str(root))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["a.txt", "oof/a.txt", "oof/sub/b.txt", "sub/b.txt"]
    assert (root / "oof" / "sub" / "b.txt").read_text() == "b"
