/*
 * judge_shipments: `flashstream judge shipments DIR`, the shipments consumer's
 * dispatch decisions (end of Kafka -> Avro -> Redis -> model -> Kafka) scored against
 * the simulator's ground truth in DIR (shipments.csv, truth_shipments.csv).
 *
 * A shipment "would be late" when its true delivery time without intervention
 * (true_delivery_h) exceeds its promise. Expedited = EXPRESS or PRIORITY. Printed: one
 * JSON line, then a short table: precision and recall of expedited (and of EXPRESS
 * alone) on would-be-late shipments, capacity use per region and hour against
 * shipments.capacity_per_hour, and the cost
 *   expedited x shipments.express_cost + late and not expedited x shipments.late_penalty
 * (assuming an expedited parcel arrives on time) against two baselines: every
 * flash-sale order express (no capacity limit) and nothing expedited. A shipment's
 * creation decision (event_ts = its CREATED time) gives the prediction scored (MAE);
 * a revision at hand-over can only raise its kind, and the final kind is the one
 * judged, counted in the hour of the decision that set it. Exit status 1 when a
 * region-hour went over capacity or a created shipment has no decision.
 */
#ifndef FLS_JUDGE_SHIPMENTS_H
#define FLS_JUDGE_SHIPMENTS_H

#include "conf.h"

/* argv: "shipments", then the simulator's out_dir. Returns the exit status. */
int fls_judge_shipments(fls_conf_t *conf, int argc, char **argv);

#endif
