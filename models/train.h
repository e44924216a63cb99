/*
 * train: the `flashstream train` and `flashstream eval` subcommands. They read the
 * public datasets from files (never Kafka or Redis), build a task's features, train
 * or score a model and save or report it:
 *
 *   flashstream train MODEL --data DIR --out FILE [--seed N] [--from T] [--until T]
 *   flashstream eval MODEL --model FILE --data DIR [--from T] [--until T]
 *
 * MODEL is delivery (Olist), demand (UCI Online Retail) or intent (REES46). eval
 * prints one JSON line with the metric and the baselines. argv[0] is "train" or
 * "eval"; the return value is the exit status (0, 1 on an error, 2 on bad usage).
 */
#ifndef FLS_TRAIN_H
#define FLS_TRAIN_H

int fls_train_main(int argc, char **argv);
int fls_eval_main(int argc, char **argv);

#endif
