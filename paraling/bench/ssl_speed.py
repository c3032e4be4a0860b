"""``features=ssl`` extraction: speed against the per-utterance loop of the ``transformers`` documentation, and
peak memory on a 10-minute recording against one chunk's.

Both use a tiny random encoder (:mod:`paraling.bench.encoders`): the figures measure paraling's path around the
encoder (decoding, chunking, layer choice, the cache), not the encoder's arithmetic.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from paraling.bench.io import write_wavs

__all__ = ["ssl_memory", "ssl_speed"]


def _naive(folder: Path, paths: list[Path]) -> float:
    """Seconds for the documented loop: per file, decode, the feature extractor, ``model(..., output_hidden_states)``
    under ``torch.no_grad``, every hidden state stacked; nothing cached."""
    import torch
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    from paraling.device import to_numpy

    model = AutoModel.from_pretrained(str(folder)).eval()
    processor = Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000)
    t0 = time.perf_counter()
    for p in paths:
        wave, _ = sf.read(p, dtype="float32")
        inputs = processor(wave, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
        to_numpy(torch.stack(out.hidden_states))
    return time.perf_counter() - t0


def ssl_speed(n_files: int, seconds: float = 3.0) -> dict[str, float]:
    """Audio seconds per second: the documented loop, paraling's first extraction (into the cache) and a re-run
    (a fresh store reading the cache)."""
    from paraling.bench.encoders import save_tiny_encoder
    from paraling.features import FeatureStore, make_extractor

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_encoder("wav2vec2", Path(tmp) / "encoder")
        paths = write_wavs(Path(tmp) / "wav", n_files, seconds)
        audio = n_files * seconds
        naive = _naive(folder, paths)
        node = {"kind": "ssl", "model": str(folder), "device": "cpu", "layers": "all"}
        extractor = make_extractor(node)
        extractor.encoder()  # type: ignore[attr-defined]  # loaded before the clock, as the loop's model is
        store = FeatureStore(Path(tmp) / "cache", extractor)
        t0 = time.perf_counter()
        for p in paths:
            store.get(p)
        cold = time.perf_counter() - t0
        warm_store = FeatureStore(Path(tmp) / "cache", make_extractor(node))
        t0 = time.perf_counter()
        for p in paths:
            np.asarray(warm_store.get(p)[0]).sum()
        warm = time.perf_counter() - t0
    return {
        "naive_audio_s_per_s": audio / naive,
        "cold_audio_s_per_s": audio / cold,
        "cached_audio_s_per_s": audio / warm,
        "cold_vs_naive": naive / cold,
        "cached_vs_naive": naive / warm,
    }


_PROBE = """
import ctypes, gc, json, sys, threading, time
import numpy as np, psutil
from paraling.features import make_extractor
seconds, folder = float(sys.argv[1]), sys.argv[2]
wave = np.random.default_rng(0).standard_normal(int(16000 * seconds), dtype=np.float32)  # no float64 temporary
wave *= 0.1
ex = make_extractor({"kind": "ssl", "model": folder, "device": "cpu", "chunk_seconds": 20.0})
ex.extract(wave[:8000])  # load the encoder before the baseline
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed memory back to the system: growth from here shows in the RSS
proc = psutil.Process()
base = peak = proc.memory_info().rss
done = False
def sample():
    global peak
    while not done:
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.001)
t = threading.Thread(target=sample)
t.start()
feats, _ = ex.extract(wave)
done = True
t.join()
peak = max(peak, proc.memory_info().rss)
mb = 1 << 20
print(json.dumps({"peak_mb": peak / mb, "base_mb": base / mb, "frames": len(feats), "out_mb": feats.nbytes / mb}))
"""


def ssl_memory(minutes: float = 10.0, chunk_seconds: float = 20.0) -> dict[str, float]:
    """Peak memory (MB of resident memory above the loaded encoder, sampled every millisecond during extraction, the
    output included) extracting ``minutes`` of audio, and one chunk's worth, each in a fresh process after
    ``malloc_trim``; with the output subtracted their ratio stays near 1 when memory is bounded by the chunk."""
    from paraling.bench.encoders import save_tiny_encoder

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_encoder("wav2vec2", Path(tmp) / "encoder")
        for name, seconds in (("long", minutes * 60), ("chunk", chunk_seconds)):
            run = subprocess.run(
                [sys.executable, "-c", _PROBE, str(seconds), str(folder)],
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            )
            probe = json.loads(run.stdout.strip().splitlines()[-1])
            out[f"{name}_mb"] = probe["peak_mb"] - probe["base_mb"]
            out[f"{name}_output_mb"] = probe["out_mb"]
    # the output array grows with the recording by design: it is subtracted, what remains is the working memory
    work_long = max(out["long_mb"] - out["long_output_mb"], 1.0)
    work_chunk = max(out["chunk_mb"] - out["chunk_output_mb"], 1.0)
    return {**out, "minutes": minutes, "work_ratio": work_long / work_chunk}
