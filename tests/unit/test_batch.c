/* Unit tests: batch cutting (src/batch.c, herald_batch_plan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "batch.h"

#define MAX_ROWS 16

/* Rows created 1 ms apart starting at created_at, each `length` bytes, fresh. */
static void fill(herald_queue_row *rows, size_t n, int64_t created_at, size_t length)
{
    memset(rows, 0, n * sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        rows[i].event_id = (int64_t)i + 1;
        rows[i].created_at = created_at + (int64_t)i;
        rows[i].length = length;
        rows[i].attempts = 0;
        rows[i].body = NULL;
    }
}

static herald_batch_rules rules_of(size_t max_events, size_t max_bytes, uint32_t interval,
                                   int flushing)
{
    herald_batch_rules r;
    memset(&r, 0, sizeof r);
    r.max_events = max_events;
    r.max_bytes = max_bytes;
    r.flush_interval_ms = interval;
    r.flushing = flushing;
    return r;
}

static void test_no_rows(void **state)
{
    (void)state;
    herald_queue_row rows[1];
    fill(rows, 1, 1000, 10);
    herald_batch_rules r = rules_of(10, 1000, 5000, 1);
    herald_batch_cut cut = herald_batch_plan(rows, 0, &r, 999999);
    assert_int_equal(cut.take, 0);
    assert_int_equal(cut.send_now, 0);
}

static void test_count_limit(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 5, 1000, 10);
    herald_batch_rules r = rules_of(3, 1000000, 5000, 0);
    /* Interval far from reached: the batch is full, so it leaves now. */
    herald_batch_cut cut = herald_batch_plan(rows, 5, &r, 1001);
    assert_int_equal(cut.take, 3);
    assert_int_equal(cut.send_now, 1);

    /* Exactly max_events rows: full as well. */
    cut = herald_batch_plan(rows, 3, &r, 1001);
    assert_int_equal(cut.take, 3);
    assert_int_equal(cut.send_now, 1);

    /* One fewer than max_events, nothing behind: waits. */
    cut = herald_batch_plan(rows, 2, &r, 1001);
    assert_int_equal(cut.take, 2);
    assert_int_equal(cut.send_now, 0);
    assert_int_equal(cut.ready_at_ms, 6000);
}

static void test_max_events_zero_means_one(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 4, 1000, 10);
    herald_batch_rules r = rules_of(0, 1000000, 5000, 0);
    herald_batch_cut cut = herald_batch_plan(rows, 4, &r, 1000);
    assert_int_equal(cut.take, 1);
    assert_int_equal(cut.send_now, 1);
}

static void test_byte_limit(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    /* Each row costs length + 1 = 100 bytes. */
    fill(rows, 5, 1000, 99);
    herald_batch_rules r = rules_of(100, 250, 5000, 0);
    herald_batch_cut cut = herald_batch_plan(rows, 5, &r, 1000);
    assert_int_equal(cut.take, 2);
    assert_int_equal(cut.send_now, 1);

    /* The bound is inclusive: 300 bytes fit three rows exactly. */
    r.max_bytes = 300;
    cut = herald_batch_plan(rows, 5, &r, 1000);
    assert_int_equal(cut.take, 3);
    assert_int_equal(cut.send_now, 1);

    /* 299 bytes: two rows. */
    r.max_bytes = 299;
    cut = herald_batch_plan(rows, 5, &r, 1000);
    assert_int_equal(cut.take, 2);

    /* Three rows filling the byte bound exactly, nothing behind: full. */
    r.max_bytes = 300;
    cut = herald_batch_plan(rows, 3, &r, 1000);
    assert_int_equal(cut.take, 3);
    assert_int_equal(cut.send_now, 1);

    /* Under the byte bound, nothing behind, interval not reached: waits. */
    r.max_bytes = 301;
    cut = herald_batch_plan(rows, 3, &r, 1000);
    assert_int_equal(cut.take, 3);
    assert_int_equal(cut.send_now, 0);
}

static void test_mixed_sizes(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 4, 1000, 10);
    rows[0].length = 49;  /* 50 */
    rows[1].length = 29;  /* 30, total 80 */
    rows[2].length = 39;  /* 40, total 120 > 100 */
    rows[3].length = 0;
    herald_batch_rules r = rules_of(100, 100, 5000, 0);
    herald_batch_cut cut = herald_batch_plan(rows, 4, &r, 1000);
    assert_int_equal(cut.take, 2);
    assert_int_equal(cut.send_now, 1);
    /* The next cut starts at the row that did not fit. */
    cut = herald_batch_plan(rows + 2, 2, &r, 1000);
    assert_int_equal(cut.take, 2);
}

static void test_oversize_event_goes_alone(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 3, 1000, 10);
    rows[0].length = 5000;
    herald_batch_rules r = rules_of(100, 1000, 5000, 0);
    herald_batch_cut cut = herald_batch_plan(rows, 3, &r, 1000);
    assert_int_equal(cut.take, 1);
    assert_int_equal(cut.send_now, 1);

    /* Alone in the queue it still leaves at once. */
    cut = herald_batch_plan(rows, 1, &r, 1000);
    assert_int_equal(cut.take, 1);
    assert_int_equal(cut.send_now, 1);

    /* An oversize row behind small ones is not pulled into their batch. */
    fill(rows, 3, 1000, 10);
    rows[1].length = 5000;
    cut = herald_batch_plan(rows, 3, &r, 1000);
    assert_int_equal(cut.take, 1);
    assert_int_equal(cut.send_now, 1);
    cut = herald_batch_plan(rows + 1, 2, &r, 1000);
    assert_int_equal(cut.take, 1);
    assert_int_equal(cut.send_now, 1);
}

static void test_more_rows_behind_sends_now(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 6, 1000, 10);
    /* Neither bound is hit by the rows taken, but count > take. */
    herald_batch_rules r = rules_of(5, 1000000, 60000, 0);
    herald_batch_cut cut = herald_batch_plan(rows, 6, &r, 1000);
    assert_int_equal(cut.take, 5);
    assert_int_equal(cut.send_now, 1);
}

static void test_interval_not_reached_waits(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 3, 1000, 10);
    rows[1].created_at = 2000;
    rows[2].created_at = 3000;
    herald_batch_rules r = rules_of(100, 1000000, 5000, 0);
    herald_batch_cut cut = herald_batch_plan(rows, 3, &r, 3000);
    assert_int_equal(cut.take, 3);
    assert_int_equal(cut.send_now, 0);
    /* Ready when the oldest row has waited the interval. */
    assert_int_equal(cut.ready_at_ms, 6000);

    cut = herald_batch_plan(rows, 3, &r, 5999);
    assert_int_equal(cut.send_now, 0);
    assert_int_equal(cut.ready_at_ms, 6000);

    cut = herald_batch_plan(rows, 3, &r, 6000);
    assert_int_equal(cut.take, 3);
    assert_int_equal(cut.send_now, 1);

    cut = herald_batch_plan(rows, 3, &r, 100000);
    assert_int_equal(cut.send_now, 1);
}

static void test_zero_interval_sends_now(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 2, 1000, 10);
    herald_batch_rules r = rules_of(100, 1000000, 0, 0);
    herald_batch_cut cut = herald_batch_plan(rows, 2, &r, 1000);
    assert_int_equal(cut.take, 2);
    assert_int_equal(cut.send_now, 1);
}

static void test_flushing_sends_now(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 2, 1000, 10);
    herald_batch_rules r = rules_of(100, 1000000, 5000, 1);
    herald_batch_cut cut = herald_batch_plan(rows, 2, &r, 1000);
    assert_int_equal(cut.take, 2);
    assert_int_equal(cut.send_now, 1);

    r.flushing = 0;
    cut = herald_batch_plan(rows, 2, &r, 1000);
    assert_int_equal(cut.send_now, 0);
}

static void test_retry_row_sends_now(void **state)
{
    (void)state;
    herald_queue_row rows[MAX_ROWS];
    fill(rows, 3, 1000, 10);
    herald_batch_rules r = rules_of(100, 1000000, 5000, 0);
    herald_batch_cut cut = herald_batch_plan(rows, 3, &r, 1000);
    assert_int_equal(cut.send_now, 0);

    rows[2].attempts = 1;
    cut = herald_batch_plan(rows, 3, &r, 1000);
    assert_int_equal(cut.take, 3);
    assert_int_equal(cut.send_now, 1);

    fill(rows, 3, 1000, 10);
    rows[0].attempts = 7;
    cut = herald_batch_plan(rows, 1, &r, 1000);
    assert_int_equal(cut.take, 1);
    assert_int_equal(cut.send_now, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_rows),
        cmocka_unit_test(test_count_limit),
        cmocka_unit_test(test_max_events_zero_means_one),
        cmocka_unit_test(test_byte_limit),
        cmocka_unit_test(test_mixed_sizes),
        cmocka_unit_test(test_oversize_event_goes_alone),
        cmocka_unit_test(test_more_rows_behind_sends_now),
        cmocka_unit_test(test_interval_not_reached_waits),
        cmocka_unit_test(test_zero_interval_sends_now),
        cmocka_unit_test(test_flushing_sends_now),
        cmocka_unit_test(test_retry_row_sends_now),
    };
    return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
