#!/usr/bin/env bash
# Install paraling and what it needs on a Debian/Ubuntu machine (idempotent).
#   bash scripts/install.sh          # runtime: Debian packages + the package
#   bash scripts/install.sh --dev    # also test/lint tools, PostgreSQL and Chromium for the service tests, and
#                                    # the Asterisk voice prompts (real speech) for corpus=speech
#
# Where it installs: into the active virtual environment when there is one; into the interpreter itself when that
# interpreter lets pip install (pyenv, conda, a Docker image's Python); otherwise -- a stock Debian/Ubuntu Python,
# "externally managed" by PEP 668 -- into a virtual environment it creates in .venv/. `scripts/run CMD` runs CMD
# with that environment's tools first on PATH, wherever paraling was installed.
# PARALING_PYTHON chooses the interpreter (default: python3); PARALING_VENV=1 asks for .venv/ in every case.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1
py=${PARALING_PYTHON:-python3}

in_venv() { "$1" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; }
externally_managed() {
  "$1" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
}
use_venv=0
if ! in_venv "$py"; then
  if [ "${PARALING_VENV:-0}" = 1 ] || externally_managed "$py"; then use_venv=1; fi
fi

apt_pkgs=(rubberband-cli gcc)  # gcc: paraling compiles its native CPU kernels on first use (optional at run time)
[ "$dev" = 1 ] && apt_pkgs+=(postgresql chromium)  # chromium: the MLflow UI browser test (Playwright drives it)
# Real recorded speech for corpus=speech (7 speakers; tests/integration/test_speech_corpus.py)
[ "$dev" = 1 ] && apt_pkgs+=(asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
  asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-fr-armelle asterisk-prompt-it-menardi-wav
  asterisk-prompt-es-co)
if [ "$use_venv" = 1 ] && ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_pkgs+=("python3-venv")  # Debian ships venv's pip bootstrap separately
fi
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: please install ${missing[*]} with your system package manager" >&2
  fi
fi

if [ "$use_venv" = 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "$py is externally managed (PEP 668): creating a virtual environment in .venv/"
    "$py" -m venv .venv
  fi
  py=.venv/bin/python
elif [ -d .venv ] && ! in_venv "$py"; then
  echo "note: .venv/ exists but paraling goes into $("$py" -c 'import sys; print(sys.prefix)'); scripts/run uses .venv/" >&2
fi

extras=""
[ "$dev" = 1 ] && extras="[dev]"
"$py" -m pip install -q --disable-pip-version-check -e ".${extras}"
# features.backend=resemblyzer: the GE2E weights inside Resemblyzer's wheel; paraling runs the network itself, so
# none of Resemblyzer's own dependencies (librosa, webrtcvad) are needed
[ "$dev" = 1 ] && "$py" -m pip install -q --disable-pip-version-check --no-deps "resemblyzer==0.1.4"
bindir=$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
echo "paraling installed: $bindir/paraling"
if [ "$use_venv" = 1 ]; then
  echo "it lives in .venv/: run commands as 'scripts/run paraling ...', or activate it with: source .venv/bin/activate"
fi
