/*
 * test_task_metrics: the metrics of `flashstream eval` (task_metrics) on cases
 * computed by hand.
 */
#include <criterion/criterion.h>
#include <math.h>

#include "task_metrics.h"

Test(task_metrics, mae)
{
        double y[] = {1, 2, 3, 4}, p[] = {2, 2, 1, 8};
        /* |1-2| + 0 + |3-1| + |4-8| = 7, / 4 */
        cr_assert_float_eq(fls_metric_mae(y, p, 4), 1.75, 1e-12);
        cr_assert(isnan(fls_metric_mae(y, p, 0)));
}

Test(task_metrics, snaive_scale_and_mase)
{
        /* season 2: |3-1| + |2-2| + |7-3| = 6, over 3 pairs */
        double s[] = {1, 2, 3, 2, 7};
        cr_assert_float_eq(fls_metric_snaive_mae(s, 5, 2), 2.0, 1e-12);
        cr_assert(isnan(fls_metric_snaive_mae(s, 2, 2)));
        double y[] = {10, 20}, p[] = {13, 19};
        /* MAE 2, scale 2 -> 1; scale 4 -> 0.5 */
        cr_assert_float_eq(fls_metric_mase(y, p, 2, 2.0), 1.0, 1e-12);
        cr_assert_float_eq(fls_metric_mase(y, p, 2, 4.0), 0.5, 1e-12);
        cr_assert(isnan(fls_metric_mase(y, p, 2, 0.0)));
}

Test(task_metrics, auc_perfect_inverse_and_ties)
{
        double s1[] = {0.1, 0.4, 0.35, 0.8};
        int l1[] = {0, 0, 1, 1};
        /* pairs (pos, neg): (0.35,0.1) win, (0.35,0.4) lose, (0.8,*) 2 wins: 3/4 */
        cr_assert_float_eq(fls_metric_auc(s1, l1, 4), 0.75, 1e-12);
        int l2[] = {1, 1, 0, 0};
        cr_assert_float_eq(fls_metric_auc(s1, l2, 4), 0.25, 1e-12);
        double s3[] = {0.5, 0.5, 0.5, 0.9};
        int l3[] = {1, 0, 0, 1};
        /* pos 0.5 vs two negs at 0.5: two ties = 1; pos 0.9 beats both = 2: 3/4 */
        cr_assert_float_eq(fls_metric_auc(s3, l3, 4), 0.75, 1e-12);
        double s4[] = {0.3, 0.3, 0.3};
        int l4[] = {1, 0, 1};
        cr_assert_float_eq(fls_metric_auc(s4, l4, 3), 0.5, 1e-12);
        int l5[] = {1, 1, 1};
        cr_assert(isnan(fls_metric_auc(s4, l5, 3)));
}
