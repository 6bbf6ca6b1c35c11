#!/usr/bin/env bash
# The README's second command: the whole test suite, unit and integration,
# against the real local stack (started here if it is not running).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
framelog services stop     # a demo's API owns the embedded ClickHouse; the tests start what they need
framelog stack up
framelog topics create
exec python -m pytest -ra "$@"
