#!/usr/bin/env bash
# The test command behind `make test`: ruff, then pytest, with DDS kept local and,
# where we may (root and unshare), inside a private network namespace that has only
# loopback, as a second fence against DDS traffic leaving the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/local_dds.sh
mkdir -p "$ROS_LOG_DIR"

if [ "${FER_ROS_SKIP_LINT:-0}" != 1 ]; then
  echo "== ruff"
  ruff check .
fi

echo "== pytest"
# Random test order (pytest-randomly) only when asked: FER_ROS_RANDOM_ORDER=1 (or a seed,
# FER_ROS_RANDOM_ORDER=<n>, to replay an order pytest-randomly printed). A test that needs
# another to have run first is a defect; this finds it.
case "${FER_ROS_RANDOM_ORDER:-0}" in
  0) set -- -p no:randomly "$@" ;;
  1) ;;
  *) set -- "--randomly-seed=$FER_ROS_RANDOM_ORDER" "$@" ;;
esac
if [ "${FER_ROS_NO_UNSHARE:-0}" != 1 ] && [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec "$@"' _ pytest "$@"
fi
echo "(not root or no unshare: running without a private network namespace)"
exec pytest "$@"
