#!/usr/bin/env bash
# The README's second command: the whole test suite, unit and integration,
# against the real local stack (started here if it is not running).
#
# The suite runs on its own private stack (.state-test/, every port moved by an
# offset, so its own Kafka topics, bucket and ClickHouse engine): running it on a
# machine where `scripts/demo.sh` or real videos live changes none of them. An
# explicit FRAMELOG_CONFIG_OVERLAY (e.g. a developer's second stack) is used as is.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
# Checks before the tests (pyproject.toml; README, "Checks before the tests"): lint, then types
# with no error beyond the baseline.
ruff check
python scripts/typecheck.py
if [ -z "${FRAMELOG_CONFIG_OVERLAY:-}" ]; then
  mkdir -p .state-test
  python -m framelog.stack.private_stack --state-dir "$PWD/.state-test" \
    ${FRAMELOG_CONFIG:+--config "$FRAMELOG_CONFIG"} > .state-test/overlay.yaml
  export FRAMELOG_CONFIG_OVERLAY="$PWD/.state-test/overlay.yaml"
fi
framelog services stop     # the API of an earlier run on this stack owns its embedded ClickHouse
framelog stack up
framelog topics create
exec python -m pytest -ra "$@"
