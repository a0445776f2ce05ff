/* Eight threads tracking while others flush, read stats, read errors and
 * reset identity on the same client, with the delivery thread running
 * against a destination that refuses connections. Counts must add up; the
 * TSan build of this test must be clean. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "herald/herald.h"

#define THREADS 8
#define PER_THREAD 400

typedef struct shared {
    herald_client *c;
    int stop;
    int failures;
    pthread_mutex_t lock;
} shared;

static void *tracker(void *arg)
{
    shared *s = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char props[64];
        snprintf(props, sizeof props, "{\"i\":%d}", i);
        herald_status st = (i % 7 == 0) ? herald_page(s->c, "P", props)
                                        : herald_track(s->c, "Concurrent", props);
        if (st != HERALD_OK) {
            pthread_mutex_lock(&s->lock);
            s->failures++;
            pthread_mutex_unlock(&s->lock);
        }
        if (i % 50 == 0) {
            char why[128];
            herald_last_error(s->c, why, sizeof why);
        }
    }
    return NULL;
}

static int stopped(shared *s)
{
    pthread_mutex_lock(&s->lock);
    int stop = s->stop;
    pthread_mutex_unlock(&s->lock);
    return stop;
}

static void *flusher(void *arg)
{
    shared *s = arg;
    while (!stopped(s))
        herald_flush(s->c, 5); /* the destination is down: times out */
    return NULL;
}

static void *observer(void *arg)
{
    shared *s = arg;
    while (!stopped(s)) {
        char *json = NULL;
        if (herald_stats_json(s->c, &json) == HERALD_OK)
            herald_free(json);
        herald_stats st = {.struct_size = sizeof st};
        herald_stats_get(s->c, &st);
        herald_identify(s->c, "racer", "{\"n\":1}");
        herald_reset(s->c);
    }
    return NULL;
}

static void test_many_threads_one_client(void **state)
{
    (void)state;
    char db[64];
    snprintf(db, sizeof db, "/tmp/herald-concurrency-%ld.db", (long)getpid());
    unlink(db);
    herald_destination d = {"down", "rest",
                            "{\"url\":\"http://127.0.0.1:9/v1/batch\",\"retry_base_ms\":5,"
                            "\"retry_max_delay_ms\":20,\"flush_interval_ms\":1}"};
    herald_options o;
    herald_options_init(&o);
    o.db_path = db;
    o.destinations = &d;
    o.destination_count = 1;
    shared s = {.failures = 0};
    pthread_mutex_init(&s.lock, NULL);
    assert_int_equal(herald_open(&s.c, &o), HERALD_OK);

    pthread_t trackers[THREADS], others[2];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&trackers[i], NULL, tracker, &s), 0);
    assert_int_equal(pthread_create(&others[0], NULL, flusher, &s), 0);
    assert_int_equal(pthread_create(&others[1], NULL, observer, &s), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(trackers[i], NULL);
    pthread_mutex_lock(&s.lock);
    s.stop = 1;
    pthread_mutex_unlock(&s.lock);
    pthread_join(others[0], NULL);
    pthread_join(others[1], NULL);

    assert_int_equal(s.failures, 0);
    herald_stats st = {.struct_size = sizeof st};
    assert_int_equal(herald_stats_get(s.c, &st), HERALD_OK);
    /* Every track and page, plus the observer's identifies, all queued:
     * nothing could be delivered. */
    assert_true(st.accepted >= THREADS * PER_THREAD);
    assert_int_equal(st.queued, st.accepted);
    assert_int_equal(st.sent, 0);
    assert_true(st.retried > 0);
    assert_int_equal(herald_close(s.c, 0), HERALD_E_TIMEOUT);
    pthread_mutex_destroy(&s.lock);
    char path[80];
    const char *suffixes[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
        unlink(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_threads_one_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
