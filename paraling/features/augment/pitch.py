"""Pitch-shift augmentation with Rubberband (``pyrubberband`` driving the Debian ``rubberband-cli`` binary).

:func:`augment_manifest` adds, for every original utterance, one copy per configured semitone shift. A copy has
the *same* audio path as its source, ``augmented_from`` set to the source id, its fold inherited from the source,
and ``extra["semitones"]`` / ``extra["crispness"]`` recording the shift. The shift itself is applied only when the
feature store computes the copy's features: each copy gets a feature *variant* tag (part of the cache key, e.g.
``pitch+1:c6``) and a :class:`PitchShift` transform ``(wave, sample_rate) -> wave``, so Rubberband runs once per
(file, shift, crispness) and later runs read the cached log-mel features.

Copies are training data only: :func:`paraling.data.splits.plan_folds` never makes an augmented utterance a test
row, and the training loop keeps them out of the held-out validation speakers (their copies share the speaker, so
they are dropped from fitting as well). The out-of-fold scores of a run list original utterances only.

Example:
    >>> from paraling.features.augment import augment_manifest
    >>> manifest, variants, transforms = augment_manifest(manifest, cfg.augment)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from paraling.data.manifest import Manifest, Utterance
from paraling.errors import AudioError, ConfigError, DependencyError

__all__ = ["INSTALL_HINT", "PitchShift", "augment_manifest", "check_rubberband", "variant_tag"]

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install -y rubberband-cli"
"""The command that installs the ``rubberband`` binary on Debian/Ubuntu (shown in :class:`DependencyError`)."""


def check_rubberband() -> str:
    """Return the path of the ``rubberband`` program.

    Raises:
        DependencyError: The program is not on ``PATH``; the message gives the install command.
    """
    path = shutil.which("rubberband")
    if path is None:
        raise DependencyError(
            "pitch-shift augmentation (augment=pitch) needs the `rubberband` program, which is not on PATH. "
            f"Install it with `{INSTALL_HINT}` (Debian/Ubuntu; `brew install rubberband` on macOS) "
            "or run with augment=none"
        )
    return path


def variant_tag(semitones: float, crispness: int) -> str:
    """Feature-cache variant of a shift, e.g. ``variant_tag(1.0, 6) == "pitch+1:c6"``."""
    return f"pitch{semitones:+g}:c{int(crispness)}"


@dataclass(frozen=True)
class PitchShift:
    """Shift a waveform by ``semitones`` with Rubberband, keeping its length.

    Args:
        semitones: Shift in semitones (negative = down).
        crispness: Rubberband ``--crispness`` level, 0 (smooth) to 6 (crisp; the paper's setting).

    Example:
        >>> import numpy as np
        >>> wave = np.zeros(16000, np.float32)
        >>> PitchShift(1.0)(wave, 16000).shape  # doctest: +SKIP
        (16000,)
    """

    semitones: float
    crispness: int = 6

    def __post_init__(self) -> None:
        _check_crispness(self.crispness)

    def __call__(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """Return the shifted waveform, shape ``(time,)`` like ``wave``, float32.

        Raises:
            DependencyError: ``rubberband`` is not installed.
            AudioError: Rubberband failed on this waveform.
        """
        if self.semitones == 0:
            return wave
        check_rubberband()
        import pyrubberband

        x = np.ascontiguousarray(wave, dtype=np.float32)
        try:
            y = pyrubberband.pitch_shift(
                x, int(sample_rate), float(self.semitones), rbargs={"--crispness": str(int(self.crispness))}
            )
        except Exception as exc:  # subprocess.CalledProcessError, RuntimeError, soundfile errors
            raise AudioError(
                "<waveform>",
                f"rubberband failed to shift by {self.semitones:+g} semitones ({exc}).",
                "check that `rubberband -V` works",
            ) from exc
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        n = len(x)
        if len(y) >= n:
            return np.ascontiguousarray(y[:n])
        return np.pad(y, (0, n - len(y)))


def _check_crispness(crispness: Any) -> None:
    if isinstance(crispness, bool) or not isinstance(crispness, int | np.integer) or not 0 <= crispness <= 6:
        raise ConfigError(f"augment.crispness must be an integer in 0..6 (Rubberband levels), but got {crispness=!r}")


def _check_semitones(semitones: Sequence[float]) -> list[float]:
    out = []
    for s in semitones:
        if isinstance(s, bool) or not isinstance(s, int | float) or not np.isfinite(s) or abs(s) > 12:
            raise ConfigError(f"augment.semitones must be numbers in [-12, 12], but got semitones={list(semitones)!r}")
        if s != 0 and float(s) not in out:
            out.append(float(s))
    if not out:
        raise ConfigError(
            f"augment=pitch needs at least one non-zero shift in augment.semitones, but got {list(semitones)!r}; "
            "e.g. augment.semitones=[-1,1]"
        )
    return out


def _useful(u: Utterance, folds: set[int]) -> bool:
    """Whether a copy of ``u`` would ever be a training row (a copy trains in every fold but its source's)."""
    return not (u.fold is not None and u.fold >= 0 and folds == {u.fold})


def augment_manifest(manifest: Manifest, augment_cfg: Any) -> tuple[Manifest, list[str], list[PitchShift | None]]:
    """Append pitch-shifted copies of the original utterances.

    Call it after folds are assigned: copies inherit their source's ``fold`` so that they train only in folds where
    the source is training data. Utterances whose copies could never train (the only scored fold of a fixed split)
    are not copied.

    Args:
        manifest: Manifest with folds assigned; already-augmented rows are kept as they are.
        augment_cfg: The ``augment`` config node (``kind``, ``semitones``, ``crispness``).

    Returns:
        ``(manifest, variants, transforms)``, aligned with the returned manifest: originals first (variant ``""``,
        transform ``None``), then the copies (variant from :func:`variant_tag`, a :class:`PitchShift`).

    Raises:
        ConfigError: Unknown ``augment.kind``, no non-zero shift, crispness outside 0..6.
    """
    name = augment_cfg.kind
    if name == "none":
        return manifest, [""] * len(manifest), [None] * len(manifest)
    if name != "pitch":
        raise ConfigError(f"augment.kind must be 'none' or 'pitch', but got kind={name!r}")
    shifts = _check_semitones(list(augment_cfg.semitones))
    crisp = int(augment_cfg.crispness)
    _check_crispness(crisp)
    utts = list(manifest)
    variants: list[str] = [""] * len(utts)
    transforms: list[PitchShift | None] = [None] * len(utts)
    folds = {u.fold for u in utts if u.augmented_from is None and u.fold is not None and u.fold >= 0}
    n_skipped = 0
    for u in list(manifest):
        if u.augmented_from is not None:
            continue
        if not _useful(u, folds):
            n_skipped += 1
            continue
        for s in shifts:
            tag = variant_tag(s, crisp)
            utts.append(
                replace(
                    u, id=f"{u.id}@{tag}", augmented_from=u.id, extra={**u.extra, "semitones": s, "crispness": crisp}
                )
            )
            variants.append(tag)
            transforms.append(PitchShift(s, crisp))
    log.info(
        "augment=pitch: %d copies (%s semitones, crispness %d); %d test-only utterances not copied",
        len(utts) - len(manifest),
        shifts,
        crisp,
        n_skipped,
    )
    return Manifest(utts, manifest.source), variants, transforms
