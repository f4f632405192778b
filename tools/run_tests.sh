#!/usr/bin/env bash
# The default test run (tiny configs; full-size tests are marked slow). Exit codes are passed through, except
# pytest's 5 ("no tests collected"), which is a failure here: a suite that runs nothing must not look green.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${EDGEVIT_VENV:-.venv}
"$VENV/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; treating as failure" >&2
  exit 1
fi
exit "$rc"
