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
# The clickstream consumer's models (intent-sim, participation) train on a seeded,
# file-only simulated sale (10 simulated minutes, the sale from minute 2, 5000 users).
SIM=$(mktemp -d)
"$BIN" simulate --sim.produce=false --sim.realtime=false --sim.progress_ms=0 \
        --sim.seed=$SEED --sim.start_ts=1700000000000 --sim.duration_s=600 \
        --sim.sale_start_s=120 --sim.rate=100 --sim.users=5000 --sim.out_dir="$SIM"
"$BIN" train intent-sim --data "$SIM" --out models/intent_sim.flsm --seed $SEED
"$BIN" train participation --data "$SIM" --out models/participation.flsm --seed $SEED
rm -rf "$SIM"
# The orders consumer's models train on a simulated sale (seed 1, 30 minutes, sale at
# 5 minutes, fixed clock), written to a temporary folder; inventory reads the
# demand-sim.flsm it finds next to its --out.
SIM=$(mktemp -d)
"$BIN" simulate --sim.seed=1 --sim.realtime=false --sim.produce=false --sim.out_dir="$SIM" \
        --sim.duration_s=1800 --sim.sale_start_s=300 --sim.start_ts=1767225600000 --sim.progress_ms=0
"$BIN" train demand-sim --data "$SIM" --out models/demand-sim.flsm --seed $SEED
"$BIN" train inventory --data "$SIM" --out models/inventory.flsm --seed $SEED
rm -rf "$SIM"
# delivery-sim.flsm: the shipments consumer's delivery-time model, trained on a seeded
# 26-hour simulated sale (sale from hour 13, ~3.7M shipment events, ~3 GB of CSV in a
# temporary folder) with the features of models/task_dispatch.h.
SIM=$(mktemp -d)
"$BIN" simulate --sim.produce=false --sim.realtime=false --sim.drain=true --sim.progress_ms=0 \
        --sim.seed=7 --sim.rate=60 --sim.duration_s=93600 --sim.sale_start_s=46800 \
        --sim.start_ts=1700000000000 --sim.out_dir="$SIM"
"$BIN" train delivery-sim --data "$SIM" --out models/delivery-sim.flsm --seed $SEED
"$BIN" eval delivery-sim --model models/delivery-sim.flsm --data "$SIM"
rm -rf "$SIM"
# delivery-olist.flsm: the same features and trainer as delivery-sim, on the Olist
# orders converted to shipment events (tools/olist_ship.c), for the real-traffic replay
# of the shipments consumer (tools/IMPORT-SHIPMENTS.md).
SIM=$(mktemp -d)
"$BIN" convert olist-shipments "$DATA/olist-brazilian-ecommerce" "$SIM"
"$BIN" train delivery-sim --data "$SIM" --out models/delivery-olist.flsm --seed $SEED
"$BIN" eval delivery-sim --model models/delivery-olist.flsm --data "$SIM"
rm -rf "$SIM"
