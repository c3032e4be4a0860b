"""The standard-corpus recipes on tiny trees with the real layout and naming: parsed labels, speakers, groups, the
protocol's folds, finished work skipped, and one clear line for a missing folder or label file."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from paraling.data.manifest import Manifest, Utterance
from paraling.data.recipes import load_corpus
from paraling.data.recipes.compare import prepare_compare
from paraling.data.recipes.cremad import prepare_cremad
from paraling.data.recipes.emodb import prepare_emodb
from paraling.data.recipes.iemocap import prepare_iemocap
from paraling.data.recipes.ravdess import prepare_ravdess
from paraling.data.recipes.standard import CATALOG, check_counts
from paraling.data.splits import EXCLUDED, assign_folds, describe_protocol, plan_folds
from paraling.errors import CorpusError

Tree = Callable[[str], Path]


def _read(path: Path) -> Manifest:
    return Manifest.read(path, allow_outside_root=True)


def test_emodb_names_give_speaker_emotion_and_gender(standard_tree: Tree, tmp_path: Path) -> None:
    m = _read(prepare_emodb(standard_tree("emodb"), tmp_path / "out"))
    assert len(m) == 28 and sorted(m.speakers) == ["03", "08", "10", "13"]
    assert Counter(u.label for u in m) == {e: 4 for e in CATALOG["emodb"].classes}
    u = next(u for u in m if u.id.startswith("08") and u.id[5] == "W")
    assert u.label == "anger" and u.extra["gender"] == "female" and u.extra["text"] == u.id[2:5]
    folds = assign_folds(m, "loso")  # the recipe's protocol: one fold per speaker
    assert len(set(folds.values())) == 4 and all(
        len({folds[v.id] for v in m if v.speaker == s}) == 1 for s in m.speakers
    )


def test_ravdess_keeps_audio_only_speech_and_reads_every_field(standard_tree: Tree, tmp_path: Path) -> None:
    m = _read(prepare_ravdess(standard_tree("ravdess"), tmp_path / "out"))
    assert len(m) == 48 and len(m.speakers) == 6 and len(m.labels) == 8
    u = next(u for u in m if u.id == "03-01-05-02-01-01-04")
    assert (u.label, u.speaker, u.extra["intensity"], u.extra["gender"]) == ("angry", "actor04", "strong", "female")
    both = _read(prepare_ravdess(standard_tree("ravdess"), tmp_path / "both", vocal_channel="both"))
    assert len(both) == 54 and Counter(u.extra["channel"] for u in both)["song"] == 6


def test_cremad_names_give_actor_and_emotion(standard_tree: Tree, tmp_path: Path) -> None:
    m = _read(prepare_cremad(standard_tree("cremad"), tmp_path / "out"))
    assert len(m) == 36 and sorted(m.speakers) == [str(a) for a in range(1001, 1007)]
    assert set(m.labels) == set(CATALOG["cremad"].classes)
    assert {u.extra["level"] for u in m} == {"HI", "XX"}


def test_iemocap_four_classes_speakers_and_sessions(standard_tree: Tree, tmp_path: Path) -> None:
    m = _read(prepare_iemocap(standard_tree("iemocap"), tmp_path / "out"))
    # per dialog 12 turns, fru and xxx left out: 10; 2 dialogs x 3 sessions
    assert len(m) == 60 and Counter(u.extra["original_label"] for u in m)["exc"] == 6
    assert set(m.labels) == {"neutral", "happy", "angry", "sad"}
    assert sorted(m.speakers) == ["Ses01F", "Ses01M", "Ses02F", "Ses02M", "Ses03F", "Ses03M"]
    u = next(u for u in m if u.id == "Ses01F_impro01_M000")  # a male turn in the female actor's dialog
    assert (u.speaker, u.extra["session"], u.label) == ("Ses01M", "Ses01", "angry")
    folds = assign_folds(m, "loso", group_by="session")  # leave-one-session-out
    assert sorted(set(folds.values())) == [0, 1, 2]
    for plan in plan_folds(m.with_folds(folds)):
        test_sessions = {m[i].extra["session"] for i in plan.test}
        assert len(test_sessions) == 1 and not test_sessions & {m[i].extra["session"] for i in plan.train}
    custom = _read(prepare_iemocap(standard_tree("iemocap"), tmp_path / "c", label_map={"fru": "frustrated"}))
    assert set(custom.labels) == {"frustrated"} and len(custom) == 6


def test_compare_partitions_and_the_challenge_protocol(standard_tree: Tree, tmp_path: Path) -> None:
    m = _read(prepare_compare(standard_tree("compare"), tmp_path / "out"))
    assert Counter(u.split for u in m) == {"train": 12, "devel": 6}, "unlabelled test files are left out"
    labelled = _read(prepare_compare(standard_tree("compare"), tmp_path / "t"))
    assert labelled.labels == ["high", "low", "mid"]
    root = shutil.copytree(standard_tree("compare"), tmp_path / "with-test")
    lab = root / "lab" / "ComParE2026_Task.tsv"
    lab.write_text(lab.read_text().replace("\t?", "\tmid"))
    full = _read(prepare_compare(root, tmp_path / "full"))
    devel = assign_folds(full, "split", test_split="devel")
    by_split = {s: {devel[u.id] for u in full if u.split == s} for s in ("train", "devel", "test")}
    assert by_split == {"train": {-1}, "devel": {0}, "test": {EXCLUDED}}
    (plan,) = plan_folds(full.with_folds(devel))
    assert {full[i].split for i in plan.train} == {"train"} and {full[i].split for i in plan.test} == {"devel"}
    final = assign_folds(full, "split", test_split="test")
    (plan,) = plan_folds(full.with_folds(final))
    assert {full[i].split for i in plan.train} == {"train", "devel"}
    with pytest.raises(CorpusError, match="scores split=test, but no utterance has it"):
        assign_folds(m, "split", test_split="test")
    assert describe_protocol("split", 5, test_split="devel") == "fixed split: train on the rest, score split=devel"


def test_finished_preparation_is_reused_until_the_files_change(standard_tree: Tree, tmp_path: Path) -> None:
    root = shutil.copytree(standard_tree("emodb"), tmp_path / "emodb")
    first = prepare_emodb(root, tmp_path / "out")
    stamp = first.stat().st_mtime_ns
    assert prepare_emodb(root, tmp_path / "out").stat().st_mtime_ns == stamp, "nothing redone"
    shutil.copy(root / "wav" / "03a01Wa.wav", root / "wav" / "16a01Wa.wav")
    assert len(_read(prepare_emodb(root, tmp_path / "out"))) == 29, "a new file prepares again"


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("emodb", lambda r: (r / "wav").rename(r / "wavs"), r"no wav/ folder; EmoDB unpacks to ROOT/wav/"),
        ("ravdess", lambda r: [p.rename(r / p.name.lower()) for p in r.glob("Actor_*")], "no Actor_NN/ folders"),
        ("cremad", lambda r: (r / "AudioWAV").rename(r / "audio"), "no AudioWAV/ folder"),
        (
            "iemocap",
            lambda r: shutil.rmtree(r / "Session2" / "dialog" / "EmoEvaluation"),
            r"Session2: no dialog/EmoEvaluation/ folder with the label files",
        ),
        (
            "iemocap",
            lambda r: (r / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").unlink(),
            r"EmoEvaluation/Ses01F_impro01.txt: no label for 12 wav file\(s\)",
        ),
        ("compare", lambda r: shutil.rmtree(r / "lab"), r"no lab/ folder with the label files"),
    ],
)
def test_a_damaged_tree_is_one_line_naming_what_is_missing(
    standard_tree: Tree, tmp_path: Path, name: str, damage: Callable[[Path], object], message: str
) -> None:
    root = shutil.copytree(standard_tree(name), tmp_path / name)
    damage(root)
    prepare = {"emodb": prepare_emodb, "ravdess": prepare_ravdess, "cremad": prepare_cremad}
    prepare |= {"iemocap": prepare_iemocap, "compare": prepare_compare}
    with pytest.raises(CorpusError, match=message) as info:
        prepare[name](root, tmp_path / "out")
    assert "\n" not in str(info.value)


def test_a_complete_tree_must_match_the_documented_counts() -> None:
    info = CATALOG["emodb"]
    utts = [Utterance(f"u{i}", "/x.wav", "anger", f"s{i % 9}", 1.0) for i in range(535)]
    with pytest.raises(CorpusError, match=r"should give classes .* and 10 speakers, but gave \['anger'\] and 9"):
        check_counts(info, utts, complete=True)
    check_counts(info, utts, complete=False)  # a partial tree is logged, not refused


def test_each_recipe_is_a_corpus_kind_with_its_protocol(standard_tree: Tree, tmp_path: Path, compose_cfg) -> None:
    cfg = compose_cfg(
        ["corpus=iemocap", f"corpus.path={standard_tree('iemocap')}", f"corpus.manifest_dir={tmp_path / 'm'}"]
    )
    assert (cfg.cv.scheme, cfg.cv.group_by) == ("loso", "session")
    m = load_corpus(cfg.corpus)
    assert len(m) == 60 and m.source == str(standard_tree("iemocap"))
    assert (
        compose_cfg(["corpus=emodb"]).cv.scheme == "loso" and compose_cfg(["corpus=compare"]).cv.test_split == "devel"
    )
    assert compose_cfg(["corpus=emodb", "cv=kfold"]).cv.scheme == "kfold", "the command line still decides"
