"""Speech synthesis with espeak-ng through the ``espeakng-loader`` wheel (no system espeak needed).

The wheel ships ``libespeak-ng.so`` and its ``espeak-ng-data`` directory; this module drives the C API through
:mod:`ctypes` in synchronous mode, collects the 16-bit samples the library hands to a callback and resamples them
to the requested rate.

libespeak-ng keeps hidden global state that :func:`espeak_Initialize` does not reset (a pitch-flutter phase, an
automatic gain and cycle counters, all function-local statics), so the same call returns slightly different samples
depending on what was spoken before. To make :func:`synthesize` a pure function of its arguments, every call loads a
*fresh instance* of the library: a private copy of the ``.so`` (so nobody else's handle keeps it mapped) is opened,
initialised, used once, terminated and closed, which reloads its static data. This costs about 5 ms per call. The
library also draws random numbers: its own generator (seeded from the clock at initialisation) and the C library's
``rand()`` (breathy voice variants such as ``f2``); both are re-seeded with a fixed value before each utterance, which
resets the process-wide ``rand()`` sequence. Calls are serialised by a module lock because the library is not
re-entrant.

Example:
    >>> from paraling.data.synth import synthesize
    >>> wave = synthesize("Hello there.", voice="en+m3", sample_rate=16000)
    >>> wave.dtype, wave.ndim
    (dtype('float32'), 1)
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from paraling.atomic import atomic_path
from paraling.data.audio import resample
from paraling.errors import ConfigError, DependencyError

__all__ = ["NATIVE_SAMPLE_RATE", "synthesize"]

NATIVE_SAMPLE_RATE = 22050
"""Sample rate of libespeak-ng's output (Hz)."""

# espeak_AUDIO_OUTPUT, espeak_PARAMETER and flag values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_INSTALL_HINT = "pip install espeakng-loader"

_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_RAND_SEED = 12345


def _libc_srand(seed: int) -> None:
    """Seed the C library's ``rand()``, which libespeak-ng uses for breath noise."""
    ctypes.CDLL(None).srand(ctypes.c_uint(seed))


_private_lib: tuple[str, bytes] | None = None


def _locate() -> tuple[str, bytes]:
    """Return (path of the private copy of libespeak-ng, data dir); make the copy on first use.

    The copy lives in ``<tmp>/paraling-espeak-<user>/`` under a name keyed by the wheel's library (size and mtime),
    is written atomically and shared by all processes: it only has to be a path nobody else ``dlopen``s.
    """
    global _private_lib
    if _private_lib is not None:
        return _private_lib
    try:
        import espeakng_loader
    except ImportError as exc:
        raise DependencyError(f"espeak-ng is not available ({exc}). Fix: {_INSTALL_HINT}") from exc
    src = Path(espeakng_loader.get_library_path())
    try:
        data_path = espeakng_loader.get_data_path()
        st = src.stat()
        user = os.getuid() if hasattr(os, "getuid") else "user"
        folder = Path(tempfile.gettempdir()) / f"paraling-espeak-{user}"
        folder.mkdir(exist_ok=True)
        dst = folder / f"{src.stem}-{st.st_size}-{st.st_mtime_ns}{src.suffix}"
        if not dst.is_file() or dst.stat().st_size != st.st_size:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
    except (OSError, RuntimeError) as exc:
        raise DependencyError(
            f"cannot find libespeak-ng at {src} or its data, or copy it to a temp folder ({exc}). "
            f"Fix: {_INSTALL_HINT} (reinstall it) and check that the temp folder is writable"
        ) from exc
    _private_lib = (str(dst), data_path.encode())
    return _private_lib


def _open(lib_path: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as exc:
        raise DependencyError(f"cannot load libespeak-ng ({exc}). Fix: {_INSTALL_HINT} (reinstall it)") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    return lib


def _synth_native(text: str, voice: str, rate_wpm: int, pitch: int, pitch_range: int) -> tuple[np.ndarray, int]:
    """Speak with a freshly loaded library instance; returns (int16 samples, sample rate). Caller holds the lock."""
    lib_path, data_path = _locate()
    chunks: list[bytes] = []

    def collect(wav: ctypes._Pointer, n_samples: int, _events: int) -> int:
        if n_samples > 0 and wav:
            chunks.append(ctypes.string_at(wav, n_samples * 2))
        return 0

    callback = _CALLBACK_TYPE(collect)  # must outlive every call into the library below
    lib = _open(lib_path)
    try:
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if rate <= 0:
            raise DependencyError(
                f"espeak_Initialize failed (returned {rate}) with data {data_path.decode()}. Fix: {_INSTALL_HINT}"
            )
        try:
            lib.espeak_SetSynthCallback(callback)
            lib.espeak_ng_SetRandSeed(_RAND_SEED)
            _libc_srand(_RAND_SEED)
            if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ConfigError(
                    f"espeak-ng has no voice {voice=}; use '<language>+<variant>', e.g. 'en+m3' or 'de+f2'"
                )
            for param, value in (
                (_ESPEAK_RATE, rate_wpm),
                (_ESPEAK_PITCH, pitch),
                (_ESPEAK_RANGE, pitch_range),
                (_ESPEAK_VOLUME, 100),
            ):
                lib.espeak_SetParameter(param, int(value), 0)
            data = text.encode("utf-8") + b"\0"
            buf = ctypes.create_string_buffer(data, len(data))
            status = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
            if status != _EE_OK:
                raise DependencyError(f"espeak_Synth failed with status {status} for {voice=}, {text=}")
        finally:
            lib.espeak_Terminate()
    finally:
        _ctypes.dlclose(lib._handle)
    return np.frombuffer(b"".join(chunks), dtype=np.int16), int(rate)


def synthesize(
    text: str,
    voice: str = "en",
    rate_wpm: int = 160,
    pitch: int = 50,
    pitch_range: int = 50,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Speak ``text`` with an espeak-ng voice; the result depends only on the arguments.

    Args:
        text: UTF-8 text to speak (in the voice's language).
        voice: espeak-ng voice name, optionally with a variant: ``"en"``, ``"en+m3"``, ``"de+f2"``.
        rate_wpm: Speaking rate in words per minute (espeak-ng accepts 80-450).
        pitch: Base pitch, 0-100 (50 is the voice's default).
        pitch_range: Pitch range (intonation), 0-100; 0 is monotone.
        sample_rate: Output sample rate in Hz; the native 22050 Hz is resampled with a polyphase filter.

    Returns:
        float32 mono waveform in [-1, 1], shape ``(time,)``.

    Raises:
        ConfigError: An argument is out of range or the voice does not exist.
        DependencyError: libespeak-ng cannot be loaded or fails.

    Example:
        >>> wave = synthesize("Guten Tag.", voice="de+f2", rate_wpm=140, sample_rate=16000)
    """
    if not text.strip():
        raise ConfigError(f"cannot synthesise empty text, but got {text=}")
    if not 80 <= rate_wpm <= 450:
        raise ConfigError(f"rate_wpm must lie in [80, 450], but got {rate_wpm=}")
    if not 0 <= pitch <= 100 or not 0 <= pitch_range <= 100:
        raise ConfigError(f"pitch and pitch_range must lie in [0, 100], but got {pitch=}, {pitch_range=}")
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate must be positive, but got {sample_rate=}")
    with _lock:
        samples, native = _synth_native(text, voice, rate_wpm, pitch, pitch_range)
    wave = resample(samples.astype(np.float32) / 32768.0, native, sample_rate)
    return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)
