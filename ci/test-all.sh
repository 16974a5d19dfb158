#!/usr/bin/env bash
# Set up and run the whole censorscope test suite on a fresh Debian 12 machine, as root.
# Installs the Debian packages in ci/apt-packages.txt, builds .venv with every extra,
# then runs ruff and pytest (unit, loopback, lab). Lab tests need root and network
# namespaces; they fail (never skip) when the lab cannot be built.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "ci/test-all.sh: run as root (the lab tests create network namespaces)" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
mapfile -t APT < <(grep -v '^\s*#' ci/apt-packages.txt | sed '/^\s*$/d')
missing=()
for p in "${APT[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$PY" -m venv .venv
fi
echo "== pip install -e .[lab,test,sftp,dask]"
.venv/bin/pip install -q -U pip wheel
.venv/bin/pip install -q -e '.[lab,test,sftp,dask]'

echo "== ruff check"
.venv/bin/ruff check .

echo "== pytest"
.venv/bin/python -m pytest -p no:cacheprovider -q "$@"
