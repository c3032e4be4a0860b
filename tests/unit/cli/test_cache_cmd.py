"""`paraling cache info|clean` and the free-space check."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from paraling.cache_marker import TAG_FILE, is_paraling_cache, mark_cache
from paraling.cli.cache import cache_info, clean_cache, main
from paraling.errors import ConfigError, ResourceError
from paraling.features.store import check_free_space


def _fill(root: Path) -> None:
    for sec, n in (("features", 3), ("checkpoints", 1)):
        d = root / sec / "ab"
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"{i}.npy").write_bytes(b"x" * 1000)


def test_info_and_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path)
    info = cache_info(tmp_path)
    assert info["features"]["files"] == 3 and info["checkpoints"]["files"] == 1
    main(["info", "--cache-dir", str(tmp_path)])
    assert "features" in capsys.readouterr().out
    old = tmp_path / "features" / "ab" / "0.npy"
    t = time.time() - 10 * 86400
    os.utime(old, (t, t))
    assert clean_cache(tmp_path, older_than_days=5) == 1 and not old.exists()
    assert clean_cache(tmp_path, section="checkpoints") == 1
    assert cache_info(tmp_path)["features"]["files"] == 2
    main(["clean", "--cache-dir", str(tmp_path)])
    assert cache_info(tmp_path) == {}


def test_free_space_check(tmp_path: Path) -> None:
    check_free_space(tmp_path, 1)
    with pytest.raises(ResourceError, match="paraling cache clean"):
        check_free_space(tmp_path, 10**18)


def test_packs_are_cleaned_as_whole_folders(tmp_path: Path) -> None:
    mark_cache(tmp_path)
    t_old = time.time() - 10 * 86400
    for name, recent in (("stale", False), ("used", True)):
        d = tmp_path / "packed" / name
        d.mkdir(parents=True)
        for f in ("data.npy", "energy.npy", "meta.json"):
            (d / f).write_bytes(b"x")
            os.utime(d / f, (t_old, t_old))
        if recent:
            os.utime(d / "meta.json")  # read by the last run: the whole pack stays
    assert clean_cache(tmp_path, older_than_days=5) == 3
    assert not (tmp_path / "packed" / "stale").exists()
    assert sorted(p.name for p in (tmp_path / "packed" / "used").iterdir()) == ["data.npy", "energy.npy", "meta.json"]


@pytest.mark.parametrize("section", ["../victim", "../../victim", "/tmp", "features/../../victim", "nope"])
def test_clean_refuses_anything_but_a_section_name(tmp_path: Path, section: str) -> None:
    from paraling.errors import ConfigError

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    cache = tmp_path / "a" / "cache"
    _fill(cache)
    with pytest.raises(ConfigError, match="--section must be one of features, packed"):
        clean_cache(cache, None, section)
    assert (victim / "keep.txt").exists() and (cache / "features").exists()


def test_clean_never_follows_symbolic_links(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    for f in (victim / "old.npy", victim / "sub" / "old.npy"):
        f.write_bytes(b"x")
        os.utime(f, (time.time() - 30 * 86400,) * 2)
    cache = tmp_path / "cache"
    _fill(cache)
    mark_cache(cache)
    (cache / "checkpoints").rename(tmp_path / "moved")
    (cache / "checkpoints").symlink_to(victim)  # a section that is a link
    (cache / "features" / "link").symlink_to(victim)  # a link inside a section
    clean_cache(cache, older_than_days=1)
    clean_cache(cache, older_than_days=1, section="checkpoints")
    clean_cache(cache, None)
    assert (victim / "old.npy").exists() and (victim / "sub" / "old.npy").exists()


def test_a_project_folder_is_not_a_cache_and_nothing_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`paraling cache clean --cache-dir .` in a project folder used to delete the user's own checkpoints/."""
    (tmp_path / "README.md").write_text("my project")
    for sec in ("checkpoints", "features"):
        (tmp_path / sec).mkdir()
        (tmp_path / sec / "best-model.pt").write_bytes(b"mine")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="is not a paraling cache .* nothing was deleted"):
        clean_cache(Path("."))
    with pytest.raises(SystemExit) as exc:
        from paraling.cli.main import main as cli_main

        cli_main(["cache", "clean", "--cache-dir", "."])
    assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "checkpoints" / "best-model.pt").read_bytes() == b"mine"
    assert (tmp_path / "features" / "best-model.pt").exists()


def test_paraling_folders_under_a_user_folder_are_not_a_cache_either(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "run1").mkdir(parents=True)  # not a name paraling gives a checkpoint folder
    assert not is_paraling_cache(tmp_path)
    with pytest.raises(ConfigError, match="not a paraling cache"):
        clean_cache(tmp_path)
    assert (tmp_path / "checkpoints" / "run1").is_dir()


@pytest.mark.parametrize("days", [-5.0, float("nan"), float("-inf")])
def test_negative_or_non_finite_ages_are_refused(tmp_path: Path, days: float) -> None:
    _fill(tmp_path)
    mark_cache(tmp_path)
    with pytest.raises(ConfigError, match="--older-than must be a number of days >= 0"):
        clean_cache(tmp_path, older_than_days=days)
    assert cache_info(tmp_path)["features"]["files"] == 3


def test_an_untagged_cache_in_paralings_layout_is_cleaned_and_tagged(tmp_path: Path) -> None:
    """Caches written before the tag are recognised by their layout."""
    _fill(tmp_path)
    assert not (tmp_path / TAG_FILE).exists() and is_paraling_cache(tmp_path)
    assert clean_cache(tmp_path, section="checkpoints") == 1
    assert (tmp_path / TAG_FILE).read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_a_run_tags_its_cache(tiny_cfg, mlflow_uri: str) -> None:
    from paraling.pipeline.experiment import run_experiment

    cfg = tiny_cfg()
    run_experiment(cfg)
    assert is_paraling_cache(cfg.cache_dir) and (Path(cfg.cache_dir) / TAG_FILE).is_file()
