#!/usr/bin/env bash
# Install paraling and what it needs on a Debian/Ubuntu machine (idempotent).
#   bash scripts/install.sh          # runtime: Debian packages + the package
#   bash scripts/install.sh --dev    # also test/lint tools and PostgreSQL for the service tests
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

apt_pkgs=(rubberband-cli gcc)  # gcc: paraling compiles its native CPU kernels on first use (optional at run time)
[ "$dev" = 1 ] && apt_pkgs+=(postgresql)
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

extras=""
[ "$dev" = 1 ] && extras="[dev]"
python3 -m pip install -q --disable-pip-version-check -e ".${extras}"
echo "paraling installed: $(command -v paraling)"
