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
if (($#)); then exec python -m pytest -ra "$@"; fi
status=0
python -m pytest -ra || status=$?
# Chunked transcoding's own tests need a test clip cut into several chunks: a second pass on the same
# private stack with chunks of 10 s (the default's 60 s makes every short clip one chunk), services restarted.
framelog services stop
FRAMELOG__MEDIA__TRANSCODING__CHUNK_SECONDS=10s FRAMELOG__MEDIA__TRANSCODING__MIN_TAIL_SEGMENTS=0 \
  python -m pytest -ra tests/integration/test_pipeline_chunked.py \
  "tests/integration/test_player_browser.py::test_the_player_starts_while_a_chunked_video_processes_with_every_rung" \
  || status=$?
exit "$status"
