#!/usr/bin/env bash
# Installs everything framelog needs on a bare Debian machine, idempotently:
# Debian packages (ffmpeg, nginx with the cache-purge module), a Python 3.11
# virtualenv in .venv with framelog and its pinned dependencies, and the Kafka
# jars (fetched by Maven on first `framelog stack up`).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg nginx libnginx-mod-http-cache-purge espeak-ng chromium wrk)   # espeak-ng: spoken test clips for captions; chromium: the player's browser tests; wrk: bench_edge
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v java >/dev/null || { echo "bootstrap: Java 17+ is required (apt-get install openjdk-17-jre-headless)"; exit 1; }
command -v mvn >/dev/null || { echo "bootstrap: Maven is required (apt-get install maven)"; exit 1; }

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.framelog-installed
# framelog depends on framelog-client (client/, the light client), installed from the checkout alongside
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ client/pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing framelog, framelog-client (./client) and their dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ./client -e ".[test]"
  touch "$stamp"
fi
# The web player's hls.js and the browser tests' playwright-core (package-lock.json pins them)
command -v npm >/dev/null || { echo "bootstrap: Node.js 18+ with npm is required (apt-get install nodejs npm)"; exit 1; }
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: installing the player's npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
# The creator upload page's bundle (Uppy from node_modules, web/upload/ -> web/dist/ by esbuild)
if [ ! -f web/dist/upload.js ] || [ -n "$(find web/upload scripts/build_web.mjs package-lock.json -newer web/dist/upload.js 2>/dev/null)" ]; then
  echo "bootstrap: bundling the upload page (node scripts/build_web.mjs)"
  node scripts/build_web.mjs
fi
echo "bootstrap: ready (.venv/bin/framelog)"
