#!/bin/sh
# Rebuilds the default model files shipped in models/ (delivery.flsm, demand.flsm,
# intent.flsm) from the public datasets, seeded, on each task's documented training
# split. Run from the repository root after building:
#   models/train-defaults.sh [path/to/flashstream] [path/to/shared/data]
set -eu
BIN=${1:-build/tools/flashstream}
DATA=${2:-../shared/data}
SEED=1
for dir in olist-brazilian-ecommerce uci-online-retail-sample rees46-ecommerce-behavior-sample; do
        if [ ! -d "$DATA/$dir" ]; then
                echo "train-defaults: $DATA/$dir not found (pass the shared data folder)" >&2
                exit 1
        fi
done
"$BIN" train delivery --data "$DATA/olist-brazilian-ecommerce" --out models/delivery.flsm --seed $SEED
"$BIN" train demand --data "$DATA/uci-online-retail-sample" --out models/demand.flsm --seed $SEED
"$BIN" train intent --data "$DATA/rees46-ecommerce-behavior-sample" --out models/intent.flsm --seed $SEED
