#!/usr/bin/env bash
# Regenerates the configuration table of README.md from the code
# (`flashstream config`), between the config:begin and config:end markers.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/tools/flashstream}
table=$(mktemp)
trap 'rm -f "$table"' EXIT
"$bin" config >"$table"
awk -v table="$table" '
        /<!-- config:begin -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
        /<!-- config:end -->/ { skip = 0 }
        !skip { print }
' README.md >README.md.new
mv README.md.new README.md
