"""A user's own corpus recipe and feature extractor, in their own package and their own ``--config-dir``, are found
and trained with, without editing paraling (docs/extending.md shows the same files)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf
from mlflow.tracking import MlflowClient

PLUGIN = '''
"""A user's plug-ins: a corpus recipe reading a plain listing and an MFCC feature extractor."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from paraling.config_groups import CorpusConfig, FeaturesConfig
from paraling.data.manifest import Manifest, Utterance
from paraling.data.recipes import register_corpus
from paraling.features import register_features

LOADED = []  # the test reads how often each plug-in ran


@dataclass
class ListingConfig(CorpusConfig):
    kind: str = "listing"
    listing: str = "files.txt"  # lines: <wav file> <speaker> <label>


@register_corpus("listing", config=ListingConfig)
def load_listing(cfg: ListingConfig) -> Manifest:
    root = Path(cfg.path)
    utts = []
    for line in (root / cfg.listing).read_text().splitlines():
        name, speaker, label = line.split()
        utts.append(Utterance(Path(name).stem, str(root / name), label, speaker, 0.5))
    LOADED.append("listing")
    return Manifest(utts, root / cfg.listing)


@dataclass
class MfccConfig(FeaturesConfig):
    kind: str = "mfcc"
    n_mfcc: int = 13
    sample_rate: int = 16000


@register_features("mfcc", config=MfccConfig)
@dataclass(frozen=True)
class Mfcc:
    n_mfcc: int = 13
    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0

    @classmethod
    def from_config(cls, cfg):
        return cls(int(cfg.n_mfcc), int(cfg.sample_rate))

    @property
    def n_features(self):
        return self.n_mfcc

    def key(self):
        return json.dumps({"mfcc": asdict(self)}, sort_keys=True)

    def extract(self, wave):
        mfcc = torchaudio.transforms.MFCC(
            self.sample_rate, self.n_mfcc, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 23, "center": False}
        )
        x = mfcc(torch.from_numpy(np.asarray(wave, np.float32))).T.contiguous()
        return x.numpy().astype(np.float32), x[:, 0].numpy().astype(np.float32)
'''


def _corpus(root: Path) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for s in range(4):
        for label, hz in (("low", 300.0), ("high", 2500.0)):
            for k in range(3):
                t = np.arange(8000) / 16000
                wave = 0.3 * np.sin(2 * np.pi * hz * (1 + 0.03 * s) * t) + 0.01 * rng.standard_normal(8000)
                name = f"s{s}_{label}_{k}.wav"
                sf.write(root / name, wave.astype(np.float32), 16000)
                lines.append(f"{name} spk{s} {label}")
    (root / "files.txt").write_text("\n".join(lines) + "\n")


def test_a_recipe_and_an_extractor_from_outside_the_package_train_a_run(tmp_path: Path) -> None:
    package = tmp_path / "site" / "my_plugins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugins.py").write_text(PLUGIN)
    data = tmp_path / "data"
    data.mkdir()
    _corpus(data)
    conf = tmp_path / "my_conf"
    for group in ("corpus", "features", "experiment"):
        (conf / group).mkdir(parents=True)
    (conf / "corpus" / "listing.yaml").write_text(f"name: tones\nkind: listing\npath: {data}\n")
    (conf / "features" / "mfcc.yaml").write_text("kind: mfcc\nn_mfcc: 12\n")
    (conf / "experiment" / "mine.yaml").write_text(
        textwrap.dedent(
            """\
            # @package _global_
            defaults:
              - override /corpus: listing
              - override /features: mfcc
            name: mine
            plugins: [my_plugins.plugins]
            cv: {folds: 2}
            trainer: {epochs: 20, batch_size: 32, checkpoint: false}
            model: {channels: [8, 8, 8], fc_sizes: [16]}
            progress: never
            """
        )
    )
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "MLFLOW_TRACKING_URI": uri}
    env.pop("PARALING_PLUGINS", None)
    cmd = [sys.executable, "-m", "paraling.cli.main", "train", "--config-dir", str(conf), "experiment=mine"]
    run = subprocess.run(
        [*cmd, f"cache_dir={tmp_path / 'cache'}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(uri)
    (r,) = client.search_runs([client.get_experiment_by_name("paraling").experiment_id])
    assert r.info.status == "FINISHED"
    params = r.data.params
    assert params["corpus.kind"] == "listing" and params["corpus.listing"] == "files.txt"
    assert params["features.kind"] == "mfcc" and params["features.n_mfcc"] == "12"
    assert params["data.n_windows"] and float(r.data.metrics["uar"]) > 0.5  # 24 clips, two clearly different tones
    assert "demo_seed" not in " ".join(params)  # the recipe's node holds only its own keys
    # a key the recipe does not have is one line naming the recipe's keys
    bad = subprocess.run(
        [*cmd, "+corpus.demo_seed=3", f"cache_dir={tmp_path / 'cache'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "corpus.demo_seed is not a key of the 'listing' corpus recipe" in bad.stderr
