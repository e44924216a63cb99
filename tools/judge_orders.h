/*
 * judge_orders: `flashstream judge orders DIR`, the orders consumer's restock signals
 * (end of Kafka -> Avro -> Redis -> model -> Kafka) scored against the simulator's
 * ground truth in DIR (orders.csv, truth_demand.csv, summary.json).
 *
 * Printed: one JSON line, then a short table.
 *  - Stock-outs: a cell (sku:warehouse) runs out when a PLACED line takes its stock to
 *    0 (replayed from orders.csv). One is "warned" when a RESTOCK signal for the cell
 *    came at least one lead time (orders.lead_time_s) before it and after the cell's
 *    previous stock-out.
 *  - False signals: a signal opening an episode (reason projected_stockout) whose cell's
 *    true demand over the cover (lead + orders.safety_s, from truth_demand.csv, pro
 *    rata per 60-s interval) is below the stock on hand it reported.
 *  - Lost sales and overstock of three replenishment policies replayed against the
 *    true demand per cell and interval, from the opening stock: the signals (each
 *    RESTOCK orders its recommended quantity less what is on order, delivered one lead
 *    time later), a fixed-threshold baseline (order FLS_JUDGE_Q units when stock plus
 *    on order falls to FLS_JUDGE_S or less, delivered one lead time later) and no
 *    reordering. Lost = demand not served; overstock = units left at the end beyond
 *    the cell's demand of its last 15 intervals.
 * The per-warehouse lead times of orders.lead_time_by_warehouse are not applied here:
 * the judge uses orders.lead_time_s for every cell.
 */
#ifndef FLS_JUDGE_ORDERS_H
#define FLS_JUDGE_ORDERS_H

#include "conf.h"

#define FLS_JUDGE_S 5  /* baseline reorder point, units */
#define FLS_JUDGE_Q 30 /* baseline order quantity, units */

/* argv: "orders", then the simulator's out_dir. Returns the exit status. */
int fls_judge_orders(fls_conf_t *conf, int argc, char **argv);

#endif
