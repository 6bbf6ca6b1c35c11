#!/usr/bin/env bash
# The README's first command: set everything up and run the main job end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
framelog stack up
framelog topics create
framelog demo
