#!/usr/bin/env bash
# The test suite on every core (pytest-xdist: one worker per core, each worker's runtimes on one thread; tests that
# must not share a machine carry an xdist_group and run one after another on one worker). Extra arguments go to
# pytest: `tools/run_tests.sh -m slow` is the full-size tier. Exit codes are passed through, except pytest's 5
# ("no tests collected"), which is a failure here: a suite that runs nothing must not look green.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${EDGEVIT_VENV:-.venv}
"$VENV/bin/python" -m pytest -n "${EDGEVIT_TEST_WORKERS:-auto}" --dist loadgroup "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; treating as failure" >&2
  exit 1
fi
exit "$rc"
