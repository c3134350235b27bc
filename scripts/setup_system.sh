#!/usr/bin/env bash
# System packages the build and the tests need: cmake (the message build), a C
# compiler, Chromium (the viewer page is tested in a real headless browser) and
# PostgreSQL (the shared gallery is tested against a real server).
# Installs the missing ones with apt-get when run as root on Debian/Ubuntu; otherwise
# says what to install. Idempotent: does nothing when everything is present.
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(gcc g++)
command -v chromium >/dev/null || missing+=(chromium)
command -v ip >/dev/null || missing+=(iproute2)
# A real PostgreSQL server for the fleet-gallery tests (each test starts its own
# throwaway cluster on a Unix socket; nothing is left running).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing system packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "setup: please install these system packages first: ${missing[*]}" >&2
  echo "       (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
