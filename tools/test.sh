#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs all of it:
# lint, types, the Python suite (unit, parity, integration), and the JavaScript client's tests.
# Idempotent: a second run reuses the virtual environment and skips installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${AVATAR_ENGINE_VENV:-.venv}"

# System packages the tests drive for real (Debian names). Root on CI; sudo elsewhere.
apt_packages=(espeak-ng clang libclang-rt-14-dev chromium redis-server mono-mcs)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q ".[test]"

"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/mypy"

if [ -f clients/threejs/package.json ]; then
  (cd clients/threejs && { [ -f package-lock.json ] && npm ci --no-audit --no-fund || npm install --no-audit --no-fund; } && npm run build && npm test)
fi

"$venv/bin/pytest"
