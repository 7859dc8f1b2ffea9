#!/usr/bin/env bash
# Install the distribution packages the test suite drives (Chromium for the console tests,
# SoftHSM2 for the PKCS#11 provider, wrk and valgrind (callgrind's instruction counts) for
# benchmarks) when they are missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v callgrind_control >/dev/null 2>&1 || need+=(valgrind)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
