"""Training-only data augmentation: pitch-shifted copies of utterances (see :mod:`paraling.features.augment.pitch`)."""

from paraling.features.augment.pitch import INSTALL_HINT, PitchShift, augment_manifest, check_rubberband, variant_tag

__all__ = ["INSTALL_HINT", "PitchShift", "augment_manifest", "check_rubberband", "variant_tag"]
