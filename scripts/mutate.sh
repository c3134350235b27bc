#!/usr/bin/env bash
# `make mutate`: mutation testing with mutmut (pinned in requirements/mutate.txt) on the
# modules and tests that setup.cfg's [mutmut] section lists. Each mutant is one small
# change to the code (a flipped comparison, a changed constant, a removed call); the
# tests that cover the changed function run against it, and a mutant they do not notice
# "survives". The report, with every survivor's diff: build/mutate-report.md.
#
# mutmut runs the tests in this process on a mutated copy of fer_ros (mutants/fer_ros);
# test/conftest.py takes the generated messages from the installed copy beside it. So
# the modules listed are those the tests call in-process; the nodes' behaviour over DDS
# (separate processes, which mutmut cannot follow) is left to the node tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(realpath "${VENV:-.venv}")
source scripts/local_dds.sh
mkdir -p "$ROS_LOG_DIR" build

# mutmut and its dependencies beside the test venv, never in it (--no-deps: pinned).
if ! cmp -s requirements/mutate.txt build/mutate/.requirements 2>/dev/null; then
  echo "mutate: installing mutmut into build/mutate"
  rm -rf build/mutate
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --target build/mutate \
    -r requirements/mutate.txt
  cp requirements/mutate.txt build/mutate/.requirements
fi
# mutants/ first for child processes too (a test that starts Python runs the same code).
# mutmut's first pass records which tests call which function, in its own process; a
# child Python started by a test (in another folder, without mutmut's configuration)
# would try to record too and fail: sitecustomize.py, which runs only in such children,
# turns that pass off there.
mkdir -p build/mutate-site
cat > build/mutate-site/sitecustomize.py <<'PY'
import os
if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    os.environ["MUTANT_UNDER_TEST"] = ""
PY
export PYTHONPATH="$PWD/mutants:$PWD/build/mutate-site:$PWD/build/mutate${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$VENV/bin:$PATH"

# Every run starts from the working tree: results kept from another tree would mislead.
# (made empty before Python starts: a path entry missing at start-up is never searched)
rm -rf mutants && mkdir mutants
# One PostgreSQL server for the whole run (Unix socket only): the tests that only need a
# database take a new one on it instead of starting a server for every mutant.
FER_ROS_TEST_PG_ROOT=$("$VENV/bin/python" test/pgutil.py start)
export FER_ROS_TEST_PG_ROOT
trap '"$VENV/bin/python" test/pgutil.py stop "$FER_ROS_TEST_PG_ROOT"' EXIT
trap 'exit 143' TERM INT  # stopped: still stop the server (the EXIT trap)
start=$(date +%s)
run() {
  if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    unshare -n bash -c 'ip link set lo up && exec "$@"' _ "$@"
  else
    "$@"
  fi
}
# mutmut's exit code says nothing about survivors; the report does.
run "$VENV/bin/python" build/mutate/bin/mutmut run --max-children "${MUTATE_JOBS:-2}" \
  | tr '\r' '\n' | grep -v '^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]' || true
"$VENV/bin/python" scripts/mutate_report.py --seconds $(( $(date +%s) - start )) \
  --out build/mutate-report.md
