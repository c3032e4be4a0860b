"""A registered model served by MLflow's own server (``mlflow models serve --env-manager local``) on 127.0.0.1:
real WAV files posted as base64 in JSON get the labels and probabilities ``paraling predict`` gives; bad requests
get a 4xx with one clear line, and the server stays up."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import paraling

pytestmark = pytest.mark.service


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _records(*audio: Any) -> bytes:
    return json.dumps({"dataframe_records": [{"audio": a} for a in audio]}).encode()


def _b64(path: Path | bytes) -> str:
    return base64.b64encode(path if isinstance(path, bytes) else Path(path).read_bytes()).decode()


@pytest.fixture()
def served(
    tone_corpus: Path, tmp_path: Path, mlflow_uri: str, free_port: Callable[[], int]
) -> Iterator[dict[str, Any]]:
    """A tiny model registered as ``served@champion`` and served on 127.0.0.1 (stopped afterwards)."""
    cfg = paraling.compose(
        ["corpus=csv", f"corpus.path={tone_corpus}", "trainer.epochs=2", "cv.folds=2", "model.channels=[8,8,8]",
         "model.fc_sizes=[16]", f"cache_dir={tmp_path / 'cache'}", "progress=never", "trainer.checkpoint=false"]
    )  # fmt: skip
    run_id = paraling.run_experiment(cfg).run_id
    paraling.assemble_ensemble(run_ids=[run_id], method="all", register="served")
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "PARALING_SERVE_MAX_MB": "1"}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/served@champion", "--env-manager", "local"]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115  # open for the server's lifetime
    proc = subprocess.Popen([*cmd, "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(1)
        yield {"url": url, "proc": proc, "run_id": run_id, "wavs": sorted((tone_corpus.parent / "wav").glob("*.wav"))}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_served_model_answers_like_paraling_predict(served: dict[str, Any], tmp_path: Path) -> None:
    wavs = served["wavs"][:6]
    status, body = _post(f"{served['url']}/invocations", _records(*(_b64(w) for w in wavs)))
    assert status == 200, body
    rows = json.loads(body)["predictions"]
    expected = paraling.load_model("models:/served@champion").predict([str(w) for w in wavs])
    assert [r["label"] for r in rows] == [p.label for p in expected]
    classes = paraling.load_model("models:/served@champion").classes
    for row, exp in zip(rows, expected, strict=True):
        got = np.array([row[f"proba_{c}"] for c in classes])
        assert np.abs(got - exp.proba).max() < 1e-6 and row["path"].startswith("row")


def test_bad_requests_get_a_clear_4xx_and_the_server_stays_up(served: dict[str, Any]) -> None:
    url = f"{served['url']}/invocations"
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    wav = bytearray(buf.getvalue())
    wav[24:28] = (1).to_bytes(4, "little")  # a header claiming 1 Hz
    huge = base64.b64encode(os.urandom(2 << 20)).decode()  # 2 MB, over the server's 1 MB limit
    cases = {
        "not audio": (_records(_b64(b"this is not audio at all" * 10)), "row 0: not a usable recording"),
        "empty": (_records(""), "row 0: 'audio' is empty"),
        "not base64": (_records("%%%not base64%%%"), "row 0: 'audio' is not base64"),
        "1 Hz": (_records(_b64(bytes(wav))), "row 0: not a usable recording"),
        "huge": (_records(huge), "over the 1 MB limit"),
        "no rows": (json.dumps({"dataframe_records": []}).encode(), ""),
        "not JSON": (b"{{{", ""),
    }
    for name, (body, message) in cases.items():
        status, text = _post(url, body)
        assert 400 <= status < 500, (name, status, text[:500])
        assert "Traceback" not in text, name
        if message:
            assert message in json.loads(text)["message"], (name, text[:500])
    assert served["proc"].poll() is None
    with urllib.request.urlopen(f"{served['url']}/ping", timeout=10) as resp:
        assert resp.status == 200
