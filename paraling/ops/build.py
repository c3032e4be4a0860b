"""Building and loading the native CPU kernels (``csrc/*.c``) as one shared library, safely.

The library is compiled on first use with the system C compiler (``$CC``, else ``cc``; ``-O3 -march=native
-fopenmp``) into ``$PARALING_NATIVE_DIR`` (default ``~/.cache/paraling/native``), keyed by the source, the compiler
and the CPU, and loaded with ctypes; OpenMP resolves to the runtime torch already loaded, so both share one thread
pool. Only a library that is this user's own is loaded: its folder is private (0700, this user's), the file and its
recorded SHA-256 are this user's and unwritable by others, and the hash matches. Without a compiler, on a failed
build or with ``PARALING_NATIVE=0`` :func:`load_library` returns ``None`` and every op runs its torch reference.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import torch

from paraling.atomic import atomic_path
from paraling.ops.cpu import cpu_signature

__all__ = ["MAX_KERNEL", "MAX_POOL", "TILE", "library_name", "load_library", "native_enabled", "padded_channels", "ptr"]

log = logging.getLogger(__name__)

_SOURCES = Path(__file__).with_name("csrc")
_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-fPIC", "-shared", "-std=c11"]
MAX_KERNEL, MAX_POOL, TILE = 121, 254, 16  # limits and channel tile of the C kernels


def native_enabled() -> bool:
    """Whether native kernels may be used (``PARALING_NATIVE`` is not ``0``/``false``/``off``)."""
    return os.environ.get("PARALING_NATIVE", "1").strip().lower() not in {"0", "false", "off", "no"}


def _cache_dir() -> Path:
    if os.environ.get("PARALING_NATIVE_DIR"):
        return Path(os.environ["PARALING_NATIVE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "paraling" / "native"


def _build(cc: str, out: Path) -> None:
    """Compile every ``csrc/*.c`` into ``out`` (atomically); without ``-march=native`` where the compiler lacks it."""
    sources = [str(p) for p in sorted(_SOURCES.glob("*.c"))]
    errors = []
    with atomic_path(out, suffix=".so") as tmp:
        for flags in (_FLAGS, [f for f in _FLAGS if f != "-march=native"]):
            proc = subprocess.run(
                [cc, *flags, *sources, "-o", str(tmp)], capture_output=True, text=True, timeout=300, check=False
            )
            if proc.returncode == 0:
                return
            errors.append(proc.stderr.strip()[-1500:])
        raise OSError(f"{cc} failed: {errors[-1] or errors[0]}")


def _private_dir(d: Path) -> bool:
    """Create ``d`` (mode 0700) if needed; whether it is a real folder of this user that nobody else can write.

    Raises:
        OSError: ``d`` cannot be created (e.g. a read-only home).
    """
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = d.lstat()
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _own_file(p: Path) -> bool:
    """Whether ``p`` is a regular file (not a link) of this user that nobody else can write."""
    try:
        st = p.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _verified(path: Path) -> bool:
    """Whether ``path`` is this user's own build: owner and mode of the library and of its ``.sha256``, and the hash."""
    digest = path.with_suffix(".sha256")
    return _own_file(path) and _own_file(digest) and digest.read_text().strip() == _sha256(path)


def _build_verified(cc: str, path: Path) -> None:
    """Build ``path`` and record its content hash beside it (both written atomically)."""
    log.info("compiling native CPU kernels into %s", path)
    _build(cc, path)
    os.chmod(path, 0o700)  # never writable by others, whatever the umask
    with atomic_path(path.with_suffix(".sha256")) as tmp:
        tmp.write_text(_sha256(path) + "\n")
    os.chmod(path.with_suffix(".sha256"), 0o600)


def _build_dirs() -> list[Path]:
    """Where the library may live, in order: the cache folder, then a per-user folder under the temp folder."""
    return [_cache_dir(), Path(tempfile.gettempdir()) / f"paraling-native-{os.getuid()}"]


def library_name(cc: str) -> str:
    """File name of the library for this source, compiler (``cc --version``), flags and CPU."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60, check=False).stdout
    sources = [p.read_text() for p in sorted(_SOURCES.glob("*.[ch]"))]
    key = hashlib.sha256(b"\0".join(s.encode() for s in (*sources, version, " ".join(_FLAGS), cpu_signature())))
    return f"paraling-{key.hexdigest()[:16]}.so"


def _find_or_build(cc: str) -> Path | None:
    """A verified library of this user's: found, or built, in the first private build folder that works.

    A folder that is not this user's own (or that others can write) is skipped with a warning, and so is a file in
    it that fails :func:`_verified` (rebuilt once): a library planted by another user is never loaded. With no usable
    folder the library is built in a fresh private temp folder for this process.
    """
    name = library_name(cc)
    for d in [*_build_dirs(), None]:
        try:
            if d is None:
                d = Path(tempfile.mkdtemp(prefix="paraling-native-"))
            elif not _private_dir(d):
                log.warning("%s is not a private folder of this user (owner or mode); not loading kernels from it", d)
                continue
        except OSError as exc:  # cannot be created (read-only home...): the next folder
            log.info("cannot use %s for the native CPU kernels (%s)", d, exc)
            continue
        try:
            path = d / name
            if path.exists() and not _verified(path):
                log.warning("%s is not this user's own build (owner, mode or content hash); rebuilding it", path)
                path.unlink()
            if not path.exists():
                _build_verified(cc, path)
            if _verified(path):
                return path
            log.warning("%s failed its check after building; not loading it", path)
        except PermissionError as exc:  # e.g. a read-only home: try the next folder
            log.info("cannot build native CPU kernels in %s (%s)", d, exc)
    return None


@functools.lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL | None:
    """Compile (once per source, compiler and CPU) and load the kernel library; ``None`` when unavailable."""
    if not native_enabled():
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        log.info("no C compiler found: native CPU kernels off, torch ops instead (slower)")
        return None
    try:
        path = _find_or_build(cc)
        if path is None:
            return None
        lib = ctypes.CDLL(str(path))
        _declare(lib)
    except (OSError, subprocess.SubprocessError, AttributeError) as exc:  # AttributeError: a symbol is missing
        log.warning("native CPU kernels unavailable (%s); using torch ops", exc)
        return None
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    """Argument and return types of the kernels (raises ``AttributeError`` for a library that lacks one)."""
    i64, i32, f32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    geometry = [i64, *[i32] * 14]  # n, h, w, c, kh, kw, pad top/left, ph, pw, output border t/b/l/r, bf16
    lib.pl_first_block_forward.argtypes = [*geometry, ptr, ptr, ptr, ptr, i32, f32, ptr, ptr, i32]
    lib.pl_first_block_backward.argtypes = [*geometry, ptr, ptr, ptr, f32, ptr, ptr, i32]
    lib.pl_first_block_forward.restype = lib.pl_first_block_backward.restype = i32
    pool = [i64, *[i32] * 10]  # n, h, w, c, ph, pw, output border t/b/l/r, bf16
    lib.pl_pool_forward.argtypes = [*pool, ptr, ptr, ptr, i32, f32, ptr, ptr, i32]
    lib.pl_pool_backward.argtypes = [*pool, ptr, ptr, f32, ptr, ptr, i32]
    lib.pl_pool_forward.restype = lib.pl_pool_backward.restype = i32
    conv = [i64, *[i32] * 13]  # n, hx, wx, cin, cout, kh, kw, ph, pw, output border t/b/l/r, bf16
    lib.pl_conv_pool_backward.argtypes = [*conv, ptr, ptr, ptr, ptr, f32, ptr, ptr, ptr, i32]
    lib.pl_conv_pool_backward.restype = i32
    lib.pl_random_bytes.argtypes = [ptr, i64, ctypes.c_uint64, i32]
    lib.pl_random_bytes.restype = None


def padded_channels(c: int) -> int:
    """``c`` rounded up to whole channel tiles: the length of weight, bias and gradient rows the kernels read."""
    return -(-c // TILE) * TILE


def ptr(t: torch.Tensor | None) -> int | None:
    """A tensor's data pointer for ctypes (``None`` for ``None``)."""
    return None if t is None else t.data_ptr()
