/*
 * test_task_intent: the purchase-intent task (task_intent, data_rees46): label
 * construction on a hand-made event sequence (a purchase by the same user, strictly
 * after, within 10 minutes; labels unknown near the end of the data), features that
 * only see the user's own past, and the logistic-regression baseline.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data_rees46.h"
#include "task_intent.h"

#define HDR                                                                              \
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_"   \
        "id,user_session\n"

static char path[64];

static fls_rees46_t *load_text(const char *rows)
{
        char err[256];
        snprintf(path, sizeof(path), "/tmp/fls_intent_XXXXXX");
        int fd = mkstemp(path);
        cr_assert(fd >= 0);
        FILE *fp = fdopen(fd, "w");
        fputs(HDR, fp);
        fputs(rows, fp);
        fclose(fp);
        fls_rees46_t *d = fls_rees46_load_file(path, err, sizeof(err));
        unlink(path);
        cr_assert_not_null(d, "%s", err);
        return d;
}

Test(task_intent, labels_same_user_strictly_after_within_10_minutes)
{
        /* u1 purchases at 00:05:00 and 00:16:00; u2 never does. Rows are given out of
         * order (the reader sorts by time, same-second rows keeping file order). */
        fls_rees46_t *d = load_text("2019-10-01 00:00:30 UTC,view,2,0,,,\"1,5\",u2,s2\n"
                                    "2019-10-01 00:00:00 UTC,view,1,0,,,10.0,u1,s1\n"
                                    "2019-10-01 00:05:00 UTC,purchase,1,0,,,10.0,u1,s1\n"
                                    "2019-10-01 00:05:00 UTC,view,1,0,,,10.0,u1,s1\n"
                                    "2019-10-01 00:05:59 UTC,view,3,0,,,,u1,s1\n"
                                    "2019-10-01 00:06:00 UTC,view,3,0,,,5.0,u1,s1\n"
                                    "2019-10-01 00:16:00 UTC,purchase,3,0,,,5.0,u1,s1\n"
                                    "2019-10-01 00:30:00 UTC,view,2,0,,,1.5,u2,s2\n");
        cr_assert_eq(d->n, 8);
        cr_assert_eq(d->nusers, 2);
        int label[8], known[8];
        char err[256];
        cr_assert_eq(fls_task_intent_labels(d, label, known, err, sizeof(err)), 0);
        /* sorted: 00:00:00 u1 view, 00:00:30 u2 view, 00:05:00 u1 purchase, 00:05:00 u1
         * view, 00:05:59 u1 view, 00:06:00 u1 view, 00:16:00 u1 purchase, 00:30 u2 */
        const int want[8] = {1, /* u1's purchase 5 min later */
                             0, /* u2: u1's purchase does not count */
                             0, /* the purchase itself: the next one is 11 min later */
                             0, /* same second as the purchase: not strictly after */
                             0, /* 00:16:00 is 601 s later */
                             1, /* 00:16:00 is exactly 600 s later: inside */
                             0, /* no later purchase */
                             0};
        const int want_known[8] = {1, 1, 1, 1, 1, 1, 1, 0}; /* last event: 00:30 */
        for (int i = 0; i < 8; i++) {
                cr_expect_eq(label[i], want[i], "event %d: label %d", i, label[i]);
                cr_expect_eq(known[i], want_known[i], "event %d: known %d", i, known[i]);
        }
        cr_assert_eq(d->ev[1].user, d->ev[7].user);
        cr_assert(isnan(d->ev[1].price)); /* quoted "1,5" is one field, not a number */
        cr_assert_float_eq(d->ev[7].price, 1.5, 1e-9);
        fls_rees46_destroy(d);
}

Test(task_intent, features_see_only_the_users_past)
{
        fls_rees46_t *d = load_text("2019-10-01 00:00:00 UTC,view,1,0,,,10.0,u1,s\n"
                                    "2019-10-01 00:00:10 UTC,view,9,0,,,99.0,u2,s\n"
                                    "2019-10-01 00:01:00 UTC,cart,1,0,,,10.0,u1,s\n"
                                    "2019-10-01 00:02:00 UTC,purchase,1,0,,,10.0,u1,s\n");
        size_t F = fls_task_intent_nfeatures(), T = FLS_INTENT_SEQ;
        const char *const *names = fls_task_intent_feature_names();
        float *x = malloc(d->n * T * F * sizeof(*x));
        char err[256];
        cr_assert_eq(fls_task_intent_features(d, x, err, sizeof(err)), 0);
        size_t pad = 0, cart = 0, age = 0, gap = 0, views = 0, purchases = 0;
        for (size_t f = 0; f < F; f++) {
                pad = strcmp(names[f], "pad") == 0 ? f : pad;
                cart = strcmp(names[f], "cart") == 0 ? f : cart;
                age = strcmp(names[f], "log_age_s") == 0 ? f : age;
                gap = strcmp(names[f], "log_gap_s") == 0 ? f : gap;
                views = strcmp(names[f], "log_views") == 0 ? f : views;
                purchases = strcmp(names[f], "log_purchases") == 0 ? f : purchases;
        }
        /* Event 2 (u1's cart): steps T-2 = u1's view, T-1 = the cart; u2's view is not
         * in the sequence, everything earlier is padding. */
        const float *r = x + 2 * T * F;
        cr_assert_eq(r[(T - 1) * F + cart], 1);
        cr_assert_eq(r[(T - 1) * F + pad], 0);
        cr_assert_eq(r[(T - 2) * F + pad], 0);
        cr_assert_eq(r[(T - 3) * F + pad], 1);
        cr_assert_float_eq(r[(T - 2) * F + age], log1pf(60), 1e-5);
        cr_assert_float_eq(r[(T - 1) * F + gap], log1pf(60), 1e-5);
        cr_assert_float_eq(r[(T - 1) * F + views], log1pf(1), 1e-6);
        /* The purchase event counts itself; its predecessors do not see it. */
        const float *p = x + 3 * T * F;
        cr_assert_float_eq(p[(T - 1) * F + purchases], log1pf(1), 1e-6);
        cr_assert_float_eq(p[(T - 2) * F + purchases], 0, 1e-6);
        free(x);
        fls_rees46_destroy(d);
}

Test(task_intent, logreg_separates_a_simple_case)
{
        /* y = 1 exactly when x > 0.5 */
        float x[40];
        int y[40];
        for (int i = 0; i < 40; i++) {
                x[i] = (float)i / 40.0f;
                y[i] = x[i] > 0.5f;
        }
        double w[2], m[1], s[1];
        fls_logreg_fit(x, y, 40, 1, 2000, 1.0, w, m, s);
        float lo = 0.1f, hi = 0.9f;
        cr_assert(fls_logreg_predict(&lo, 1, w, m, s) < 0.2);
        cr_assert(fls_logreg_predict(&hi, 1, w, m, s) > 0.8);
        cr_assert(w[0] > 0);
}
