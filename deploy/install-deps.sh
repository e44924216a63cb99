#!/usr/bin/env bash
# Installs the Debian packages flashstream needs to build, test and run its demo, but only
# those that are missing (checked with dpkg-query; `apt-get update` runs only then).
# Idempotent and silent when everything is present. Needs root (or sudo) to install.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config
    librdkafka-dev libavro-dev libhiredis-dev libopenblas-dev liblapacke-dev
    libcriterion-dev redis-server redis-tools kafkacat curl valgrind
    # deploy/test.sh checks every C file against .clang-format.
    clang-format
    # deploy/fuzz.sh: clang and libFuzzer (libclang_rt.fuzzer, only a Recommends of
    # clang-14, which --no-install-recommends skips).
    clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
