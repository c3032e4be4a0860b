"""Shared fixtures: tiny generated corpora (real WAV files on disk), composed configs and an isolated MLflow store."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import soundfile as sf

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from paraling.scoring.oof import OOFScores

SR = 16000


def _load_helper(name: str) -> Any:
    """A helper module beside this file (tests/ is not a package under --import-mode=importlib)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PostgresCluster = _load_helper("postgres_cluster").PostgresCluster
_TREES = _load_helper("standard_trees")


@pytest.fixture(scope="session")
def standard_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``standard_tree(name)``: a tiny tree of the standard corpus ``name`` as distributed (tests/standard_trees.py),
    built once per session (do not modify; copy it first)."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = getattr(_TREES, f"make_{name}")(tmp_path_factory.mktemp(name))
        return built[name]

    return get


def make_tone_corpus(
    root: Path,
    n_speakers: int = 6,
    classes: tuple[str, ...] = ("low", "high", "noise"),
    per_class: int = 2,
    seconds: float = 0.6,
    seed: int = 0,
    sample_rate: int = SR,
) -> Path:
    """Write a small learnable corpus: class = spectral content, speaker = gain/pitch offset. Returns the CSV."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    rows = []
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    for s in range(n_speakers):
        f0 = 150 + 25 * s
        gain = 0.1 + 0.05 * s
        for label in classes:
            for k in range(per_class):
                if label == "noise":
                    x = rng.normal(0, 0.3, n)
                else:
                    f = f0 * (1 if label == "low" else 8) * (1 + 0.02 * k)
                    x = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t)
                    x += rng.normal(0, 0.05, n)
                x = (gain * x / np.max(np.abs(x))).astype(np.float32)
                name = f"wav/s{s}_{label}_{k}.wav"
                sf.write(root / name, x, sample_rate, subtype="PCM_16")
                rows.append({"file": name, "label": label, "speaker": f"spk{s}"})
    csv_path = root / "corpus.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return csv_path


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CSV path of a 6-speaker, 3-class, 36-utterance corpus shared by the session (do not modify)."""
    return make_tone_corpus(tmp_path_factory.mktemp("tone"))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_encoder(kind)``: the folder of a tiny random speech encoder (:data:`paraling.bench.encoders.KINDS`),
    saved once per session with save_pretrained, as a real one would be downloaded (do not modify)."""
    from paraling.bench.encoders import save_tiny_encoder

    root = tmp_path_factory.mktemp("encoders")

    def get(kind: str = "wav2vec2") -> Path:
        folder = root / kind
        if not (folder / "config.json").exists():
            save_tiny_encoder(kind, folder)
        return folder

    return get


@pytest.fixture(scope="session")
def save_encoder() -> Callable[..., Path]:
    """``save_encoder(kind, folder, seed=0)``: write a tiny random encoder of ``kind`` into ``folder``."""
    from paraling.bench.encoders import save_tiny_encoder

    return save_tiny_encoder


@pytest.fixture()
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store for one test (also exported as MLFLOW_TRACKING_URI)."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", os.environ.get("CI", "1"))
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def make_corpus():
    """The :func:`make_tone_corpus` factory, for tests that need their own corpus variant."""
    return make_tone_corpus


def make_oof(seed: int, noise: float = 0.6, n: int = 60) -> OOFScores:
    """Out-of-fold scores of a fake run: ``n`` utterances, classes Apple/Banana/No_Food, 2 folds, 6 speakers.

    The true class gets ``1 - noise`` extra probability, so runs of different ``seed`` are aligned, informative and
    disagree on some utterances.
    """
    from paraling.scoring.oof import OOFScores

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    p = rng.random((n, 3)) * noise
    p[np.arange(n), y] += 1 - noise
    p /= p.sum(1, keepdims=True)
    return OOFScores(
        np.array([f"u{i:03d}" for i in range(n)]),
        np.array(["Apple", "Banana", "No_Food"]),
        y,
        np.arange(n) % 2,
        np.array(["cv"] * n),
        np.array([f"s{i % 6}" for i in range(n)]),
        p.astype(np.float32),
    )


def log_oof_run(
    name: str,
    oof: OOFScores,
    tags: dict[str, str] | None = None,
    status: str = "FINISHED",
    experiment: str = "table1",
    votes: dict[str, np.ndarray] | None = None,
) -> str:
    """Log a run named ``name`` (tag ``paraling.name``) holding only ``oof/scores.npz``, ended as ``status``.

    No model is trained; the run goes to ``$MLFLOW_TRACKING_URI`` (use with the ``mlflow_uri`` fixture). ``votes``
    (vote -> probabilities) also writes ``oof/all_aggregations.npz``, as a CNN run does. Returns the run id.
    """
    import tempfile

    from paraling.scoring.oof import save_oof
    from paraling.tracking.tracker import RunTracker

    # as a run on the eating corpora (corpus.negative_class=No_Food) is tagged
    base = {"paraling.name": name, "paraling.negative_class": "No_Food"}
    tracker = RunTracker(experiment, None, name, None, {**base, **(tags or {})})
    with tempfile.TemporaryDirectory() as tmp:
        save_oof(oof, Path(tmp) / "oof" / "scores.npz")
        if votes is not None:
            np.savez_compressed(Path(tmp) / "oof" / "all_aggregations.npz", utt_ids=oof.utt_ids, **votes)
        tracker.log_artifact(Path(tmp) / "oof", "oof")
    tracker.end(status)
    assert tracker.run_id is not None
    return tracker.run_id


@pytest.fixture(scope="session")
def fake_oof() -> Callable[..., OOFScores]:
    """The :func:`make_oof` factory: ``fake_oof(seed)`` -> aligned fake out-of-fold scores."""
    return make_oof


@pytest.fixture()
def oof_run(mlflow_uri: str) -> Callable[..., str]:
    """The :func:`log_oof_run` factory on this test's isolated MLflow store: ``oof_run(name, oof) -> run id``."""
    return log_oof_run


def _compose(overrides: Sequence[str] = ()) -> DictConfig:
    from paraling.config import compose

    return compose(overrides)


@pytest.fixture(scope="session")
def compose_cfg() -> Callable[[Sequence[str]], DictConfig]:
    """``compose_cfg(overrides)``: the packaged Hydra config composed with ``overrides``, as ``paraling train`` does."""
    return _compose


@pytest.fixture()
def tiny_cfg(tone_corpus: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """``tiny_cfg(*overrides)``: a seconds-long CPU run on :func:`tone_corpus`, with ``overrides`` applied last.

    Two folds, one epoch, a small CNN (channels 8-8-8, one 32-unit FC layer), no checkpoints, no progress bars,
    caches under ``tmp_path / "cache"``.
    """
    tiny = [
        "corpus=csv",
        f"corpus.path={tone_corpus}",
        "trainer.epochs=1",
        "cv.folds=2",
        "model.channels=[8,8,8]",
        "model.fc_sizes=[32]",
        f"cache_dir={tmp_path / 'cache'}",
        "progress=never",
        "device=cpu",
        "trainer.checkpoint=false",
    ]

    def compose(*overrides: str) -> DictConfig:
        # the small CNN's keys only when the run's model is the CNN (model=svm has none of them)
        other = any(o.startswith("model=") and o != "model=cnn" for o in overrides)
        return _compose([*(t for t in tiny if not (other and t.startswith("model."))), *overrides])

    return compose


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()``: a TCP port on 127.0.0.1 that nothing listens on (now)."""
    return _free_port


def _tiny_overrides(corpus: Path, cache: Path, epochs: int = 1, log_model: bool = True) -> list[str]:
    return [
        *([] if log_model else ["tracking.log_model=false"]),
        "corpus=csv",
        f"corpus.path={corpus}",
        f"cache_dir={cache}",
        f"trainer.epochs={epochs}",
        "cv.folds=2",
        "model.channels=[8,8,8]",
        "model.fc_sizes=[16]",
        "progress=never",
    ]


@pytest.fixture(scope="session")
def tiny_overrides() -> Callable[..., list[str]]:
    """``tiny_overrides(corpus, cache, epochs=1, log_model=True)``: overrides of a seconds-long run on a CSV corpus
    (two folds, a small CNN, caches under ``cache``), for subprocesses and sweeps that take override lists."""
    return _tiny_overrides


@pytest.fixture()
def postgres(free_port: Callable[[], int]) -> Iterator[Any]:
    """A fresh PostgreSQL cluster on 127.0.0.1 that the test may stop and start (tests/postgres_cluster.py)."""
    cluster = PostgresCluster(free_port)
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture()
def postgres_url(postgres: Any) -> str:
    """The URL of :func:`postgres`."""
    return postgres.url


class MlflowServers:
    """Starts ``mlflow server`` processes on 127.0.0.1 (SQLite backend and artifacts in a folder); stops them all."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Any] = []

    def start(self, folder: Path) -> tuple[str, subprocess.Popen]:
        """A server over ``folder/server.db`` and ``folder/server-artifacts``; returns ``(url, process)``."""
        port = _free_port()
        log = open(folder / "mlflow-server.log", "a")  # noqa: SIM115 - closed in stop_all
        self.logs.append(log)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        return url, proc
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start: {(folder / 'mlflow-server.log').read_text()[-2000:]}")
            time.sleep(0.5)

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        """Stop one server (its whole process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)
        for log in self.logs:
            log.close()


@pytest.fixture()
def mlflow_servers() -> Iterator[MlflowServers]:
    """:class:`MlflowServers`; every server it started is stopped afterwards."""
    servers = MlflowServers()
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture()
def mlflow_server(tmp_path: Path, mlflow_servers: MlflowServers) -> str:
    """``mlflow server`` on 127.0.0.1:<free port> with a SQLite backend and artifacts in ``tmp_path``."""
    return mlflow_servers.start(tmp_path)[0]


# --- CI fails on skips that are not expected --------------------------------------------------------------------
# Only the CUDA tests (marked ``gpu``) may skip, where no GPU exists. Under CI any other skip (a missing compiler,
# PostgreSQL, runuser...) means a feature went untested, so the run fails.
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "gpu" not in report.keywords:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected_skips and os.environ.get("CI") and exitstatus == 0:
        print("\nunexpected skips (CI runs every test but the CUDA ones):\n  " + "\n  ".join(_unexpected_skips))
        session.exitstatus = 1
