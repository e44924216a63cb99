#!/usr/bin/env bash
# Configures and builds flashstream into build/ (CMake's default build type for this
# project, RelWithDebInfo). Extra arguments go to the cmake configure step, e.g.
#   deploy/build.sh -DFLS_WERROR=ON
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S "$ROOT" -B "$ROOT/build" "$@"
cmake --build "$ROOT/build" -j "$JOBS"
echo "build: $ROOT/build/tools/flashstream"
