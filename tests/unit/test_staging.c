/*
 * The staging log: an accepted event survives a kill -9 at any instant, is
 * committed to the queue exactly once (no loss, no duplicate) by the next
 * open, a torn record is not replayed, and a live process's staging file is
 * left alone. The kills are real: a fork()ed child raises SIGKILL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "herald/herald.h"
#include "queue.h"
#include "staging.h"

typedef struct fx {
    char dir[256];
    char path[300];
} fx;

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/herald-stage-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/q.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    remove_tree(f->dir);
    free(f);
    return 0;
}

/* The defaults on the fixture's queue, delivery off. */
static herald_options options_for(const fx *f)
{
    herald_options o;
    herald_options_init(&o);
    o.db_path = f->path;
    o.deliver = 0;
    return o;
}

static herald_client *open_with(const herald_options *o)
{
    herald_client *c = NULL;
    herald_status st = herald_open(&c, o);
    if (st != HERALD_OK) {
        char why[512];
        herald_last_error(NULL, why, sizeof why);
        fail_msg("herald_open: %s", why);
    }
    return c;
}

static herald_client *open_sized(const fx *f, uint32_t staging_bytes)
{
    herald_options o = options_for(f);
    o.staging_bytes = staging_bytes;
    return open_with(&o);
}

static herald_client *open_client(const fx *f)
{
    herald_options o = options_for(f);
    return open_with(&o);
}

static int64_t db_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        fail_msg("cannot open %s", path);
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Staging files of the queue in the directory; the first name into `first`. */
static int staging_files(const fx *f, char *first, size_t len)
{
    DIR *d = opendir(f->dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "q.db-stage-", 11) == 0) {
            if (n == 0 && first)
                snprintf(first, len, "%s/%s", f->dir, e->d_name);
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* A child tracks `count` events (seq property 1..count), with `pause`
 * waiting half-way until the first half is committed (herald_sync), then
 * kills itself with SIGKILL right after the last
 * call returns. With `block`, the parent holds the queue file's write lock
 * while the child tracks, so nothing staged is committed before the kill.
 * Returns the number the child reported accepted. */
static long run_killed_child(const fx *f, long count, int pause, int block)
{
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        herald_client *c = open_client(f);
        long ready = -1;
        char go = 0;
        if (write(up[1], &ready, sizeof ready) != (ssize_t)sizeof ready ||
            read(down[0], &go, 1) != 1)
            _exit(2);
        for (long i = 1; i <= count; i++) {
            char props[64];
            snprintf(props, sizeof props, "{\"seq\":%ld}", i);
            if (herald_track(c, "Killed", props) != HERALD_OK)
                _exit(3);
            if (i == count / 2 && pause && herald_sync(c, 60000) != HERALD_OK)
                _exit(6);
        }
        long done = count;
        if (write(up[1], &done, sizeof done) != (ssize_t)sizeof done)
            _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    close(up[1]);
    close(down[0]);
    long ready = 0, accepted = 0;
    assert_int_equal(read(up[0], &ready, sizeof ready), (ssize_t)sizeof ready);
    sqlite3 *db = NULL;
    if (block) {
        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    }
    assert_int_equal(write(down[1], "g", 1), 1);
    ssize_t r = read(up[0], &accepted, sizeof accepted);
    close(up[0]);
    close(down[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (db) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(db);
    }
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    return r == (ssize_t)sizeof accepted ? accepted : -1;
}

/* Killed right after a burst: everything accepted is recovered by the next
 * open, once. */
static void test_kill_then_recover_exactly_once(void **state)
{
    fx *f = *state;
    long accepted = run_killed_child(f, 3000, 0, 0);
    assert_int_equal(accepted, 3000);
    assert_int_equal(staging_files(f, NULL, 0), 1); /* left behind by the dead process */

    herald_client *c = open_client(f);
    assert_int_equal(herald_sync(c, 10000), HERALD_OK);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 3000);
    assert_int_equal(db_int(f->path, "SELECT count(DISTINCT json_extract(body, '$.messageId')) "
                                     "FROM events"),
                     3000);
    assert_int_equal(db_int(f->path, "SELECT count(DISTINCT json_extract(body, "
                                     "'$.properties.seq')) FROM events"),
                     3000);
    assert_int_equal(db_int(f->path, "SELECT value FROM counters WHERE name = 'accepted'"), 3000);
    /* The dead process's file is gone; ours exists while we are open. */
    assert_int_equal(staging_files(f, NULL, 0), 1);
    herald_close(c, 0);
    assert_int_equal(staging_files(f, NULL, 0), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM meta WHERE key LIKE 'stage:%'"), 0);
}

/* Killed after the ingest thread committed part of the log: the committed
 * part is not replayed (its sequence number is in the queue file). */
static void test_partly_committed_log_is_not_replayed(void **state)
{
    fx *f = *state;
    long accepted = run_killed_child(f, 2000, 1, 0);
    assert_int_equal(accepted, 2000);
    /* The first half was committed at the pause. */
    assert_true(db_int(f->path, "SELECT count(*) FROM events") >= 1000);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM meta WHERE key LIKE 'stage:%'"), 1);

    herald_client *c = open_client(f);
    herald_close(c, 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 2000);
    assert_int_equal(db_int(f->path, "SELECT count(DISTINCT json_extract(body, "
                                     "'$.properties.seq')) FROM events"),
                     2000);
    /* Session sequence numbers continue across the recovery: 1..2000. */
    assert_int_equal(db_int(f->path, "SELECT max(json_extract(body, "
                                     "'$.context.session.sequence')) FROM events"),
                     2000);
}

/* A record whose bytes do not match its check (a power loss tore it) ends
 * the replay there: what came before is kept, nothing after is invented. */
static void test_torn_record_is_not_replayed(void **state)
{
    fx *f = *state;
    long accepted = run_killed_child(f, 50, 0, 1);
    assert_int_equal(accepted, 50);
    char stage[600];
    assert_int_equal(staging_files(f, stage, sizeof stage), 1);

    /* Nothing was committed (the parent held the write lock): walk the
     * records (layout in src/staging.h) from the start to the 41st and flip
     * a byte of its payload. */
    int fd = open(stage, O_RDWR);
    assert_true(fd >= 0);
    uint64_t capacity = 0, tail = 0;
    assert_int_equal(pread(fd, &capacity, 8, 16), 8);
    assert_int_equal(pread(fd, &tail, 8, 24), 8);
    assert_int_equal(tail, 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 0);
    uint64_t pos = 0;
    for (int i = 0; i < 40; i++) {
        uint32_t len = 0;
        assert_int_equal(pread(fd, &len, 4, (off_t)(4096 + pos % capacity)), 4);
        assert_true(len > 0 && (len & 0x80000000u) == 0);
        pos += len;
    }
    unsigned char byte = 0;
    off_t at = (off_t)(4096 + pos % capacity + 40);
    assert_int_equal(pread(fd, &byte, 1, at), 1);
    byte ^= 0x5a;
    assert_int_equal(pwrite(fd, &byte, 1, at), 1);
    close(fd);

    herald_client *c = open_client(f);
    herald_close(c, 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 40);
    assert_int_equal(db_int(f->path, "SELECT max(json_extract(body, '$.properties.seq')) "
                                     "FROM events"),
                     40);
}

/* Make `name` in the fixture's directory, 8 KiB long (its path into
 * path); returns the open descriptor. */
static int make_file(const fx *f, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", f->dir, name);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 8192), 0);
    return fd;
}

/* A staging file whose owner is alive (it holds the flock) is not touched. */
static void test_live_owner_file_is_left_alone(void **state)
{
    fx *f = *state;
    char other[600];
    int fd = make_file(f, "q.db-stage-1-live", other, sizeof other);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);

    herald_client *c = open_client(f);
    assert_int_equal(herald_track(c, "e", NULL), HERALD_OK);
    herald_close(c, 0);
    assert_int_equal(access(other, F_OK), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 1);
    close(fd);
}

/* Files a process left while creating its staging file (killed before the
 * rename, or before writing the header) hold nothing: removed at open. */
static void test_unfinished_files_are_removed(void **state)
{
    fx *f = *state;
    char fresh[600], blank[600];
    snprintf(fresh, sizeof fresh, "%s/q.db-stagenew-1-aaaa", f->dir);
    snprintf(blank, sizeof blank, "%s/q.db-stage-2-bbbb", f->dir);
    const char *paths[] = {fresh, blank};
    for (int i = 0; i < 2; i++) {
        int fd = open(paths[i], O_RDWR | O_CREAT, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, 4096 + 65536), 0);
        close(fd);
    }
    herald_client *c = open_client(f);
    assert_int_equal(access(fresh, F_OK), -1);
    assert_int_equal(access(blank, F_OK), -1);
    assert_int_equal(staging_files(f, NULL, 0), 1); /* its own */
    herald_close(c, 0);
}

static int warned;

static void count_warnings(herald_log_level level, const char *message, void *userdata)
{
    (void)userdata;
    if (level == HERALD_LOG_WARN && strstr(message, "not a herald staging file") != NULL)
        warned++;
}

/* A file that only looks like a staging file by its name does not stop the
 * client from opening: it is reported and left alone. */
static void test_foreign_file_does_not_stop_open(void **state)
{
    fx *f = *state;
    char foreign[600];
    int fd = make_file(f, "q.db-stage-9-zzzz", foreign, sizeof foreign);
    char junk[8192];
    memset(junk, 'x', sizeof junk);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);

    herald_options o = options_for(f);
    o.log = count_warnings;
    warned = 0;
    herald_client *c = open_with(&o);
    assert_int_equal(warned, 1);
    assert_int_equal(herald_track(c, "e", NULL), HERALD_OK);
    herald_close(c, 0);
    assert_int_equal(access(foreign, F_OK), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 1);
}

/* While another connection holds the queue file's write lock, events stay
 * staged: herald_sync times out and says why, the stats still answer, and
 * once the lock goes everything is committed. */
static void test_sync_times_out_while_the_file_is_locked(void **state)
{
    fx *f = *state;
    herald_client *c = open_client(f);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(herald_track(c, "e", NULL), HERALD_OK);
    assert_int_equal(herald_sync(c, 200), HERALD_E_TIMEOUT);
    char why[512] = "";
    herald_last_error(c, why, sizeof why);
    assert_non_null(strstr(why, "not in the queue yet"));
    herald_stats s = {.struct_size = sizeof s};
    assert_int_equal(herald_stats_get(c, &s), HERALD_OK);
    assert_int_equal(s.queued, 0);

    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(herald_sync(c, 20000), HERALD_OK);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 10);
    herald_close(c, 0);
}

/* An event too large for the ring is committed directly, after what was
 * staged before it: the queue keeps the calls' order. */
static void test_large_event_commits_directly_in_order(void **state)
{
    fx *f = *state;
    herald_options o = options_for(f);
    o.max_event_bytes = 1u << 20;
    herald_client *c = open_with(&o);
    size_t big = 500 * 1024;
    char *props = malloc(big + 32);
    assert_non_null(props);
    const char *head = "{\"seq\":2,\"pad\":\"";
    size_t h = strlen(head);
    memcpy(props, head, h);
    memset(props + h, 'x', big);
    memcpy(props + h + big, "\"}", 3);
    assert_int_equal(herald_track(c, "small", "{\"seq\":1}"), HERALD_OK);
    assert_int_equal(herald_track(c, "large", props), HERALD_OK);
    assert_int_equal(herald_track(c, "small", "{\"seq\":3}"), HERALD_OK);
    free(props);
    herald_close(c, 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 3);
    char *order = NULL;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT group_concat(s, ',') FROM (SELECT json_extract("
                                        "body, '$.properties.seq') AS s FROM events ORDER BY id)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    order = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_string_equal(order, "1,2,3");
    free(order);
}

/* The staging file is private, and an open client's events reach the queue
 * without any call (the ingest thread), and at herald_sync at the latest. */
static void test_file_mode_and_background_commit(void **state)
{
    fx *f = *state;
    herald_client *c = open_client(f);
    char stage[600];
    assert_int_equal(staging_files(f, stage, sizeof stage), 1);
    struct stat st;
    assert_int_equal(stat(stage, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    for (int i = 0; i < 100; i++)
        assert_int_equal(herald_track(c, "e", "{\"k\":1}"), HERALD_OK);
    int64_t n = 0;
    for (int tries = 0; tries < 200 && n < 100; tries++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        n = db_int(f->path, "SELECT count(*) FROM events");
    }
    assert_int_equal(n, 100);
    assert_int_equal(herald_sync(c, 1000), HERALD_OK);
    assert_int_equal(herald_sync(NULL, 1000), HERALD_E_INVALID_ARGUMENT);
    herald_close(c, 0);
}

/* staging_bytes sizes the ring (rounded up to 256 KiB, at least 1 MiB,
 * after a 4 KiB header); 0 means no staging file: the call commits. */
static void test_staging_bytes_sizes_the_file_and_zero_turns_it_off(void **state)
{
    fx *f = *state;
    static const struct {
        uint32_t asked;
        off_t file;
    } sizes[] = {{(3u << 20) + 1, 4096 + (3u << 20) + (256u << 10)}, {1000, 4096 + (1u << 20)}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        herald_client *c = open_sized(f, sizes[i].asked);
        char stage[600];
        assert_int_equal(staging_files(f, stage, sizeof stage), 1);
        struct stat st;
        assert_int_equal(stat(stage, &st), 0);
        assert_int_equal(st.st_size, sizes[i].file);
        herald_close(c, 0);
        assert_int_equal(staging_files(f, NULL, 0), 0);
    }
    herald_client *c = open_sized(f, 0);
    assert_int_equal(staging_files(f, NULL, 0), 0);
    assert_int_equal(herald_track(c, "e", "{\"k\":1}"), HERALD_OK);
    /* Committed before the call returned: no ingest thread to wait for. */
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events WHERE type = 'track'"), 1);
    herald_close(c, 0);
}

/* Under reject_new, staged events count against the bound before they
 * are committed: exactly max_queue_events are accepted, the rest refused,
 * and the queue never holds more. */
static void test_reject_new_counts_staged_events(void **state)
{
    fx *f = *state;
    herald_options o = options_for(f);
    o.overflow_policy = HERALD_OVERFLOW_REJECT_NEW;
    o.max_queue_events = 50;
    herald_client *c = open_with(&o);
    int ok = 0, full = 0;
    for (int i = 0; i < 80; i++) {
        herald_status st = herald_track(c, "e", "{\"k\":1}");
        ok += st == HERALD_OK;
        full += st == HERALD_E_QUEUE_FULL;
    }
    assert_int_equal(ok, 50);
    assert_int_equal(full, 30);
    assert_int_equal(herald_sync(c, 5000), HERALD_OK);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 50);
    herald_close(c, 0);
}

/* ---- the fast lane, driven as the delivery thread drives it ---- */

/* A stage on the fixture's queue with one lane, "d", that holds records
 * back for a minute: nothing is committed unless the test makes it so. */
static herald_stage *open_stage(const fx *f)
{
    herald_queue_config qc = {
        .path = f->path, .durability = HERALD_DURABILITY_PROCESS, .max_events = 1000000,
        .max_bytes = 1u << 30, .max_dead_letters = 1000,
        .overflow_policy = HERALD_OVERFLOW_DROP_OLDEST,
    };
    herald_stage *s = NULL;
    char err[256] = "";
    if (herald_stage_open(&s, &qc, HERALD_STAGE_MIN, NULL, NULL, NULL, err, sizeof err) !=
        HERALD_OK)
        fail_msg("herald_stage_open: %s", err);
    static const char *const lanes[] = {"d"};
    assert_int_equal(herald_stage_set_lanes(s, lanes, 1, 60000), HERALD_OK);
    return s;
}

/* Stage {"seq":first} ... for "d"; returns the status of the last append. */
static herald_status stage_events(herald_stage *s, int first, int count, int timeout_ms)
{
    static const char *const dests[] = {"d"};
    herald_status st = HERALD_OK;
    for (int i = first; i < first + count && st == HERALD_OK; i++) {
        char body[64], err[256];
        int len = snprintf(body, sizeof body, "{\"seq\":%d}", i);
        herald_stage_entry e = {
            .event = {.created_ms = 1000, .type = "track", .body = body, .length = (size_t)len,
                      .destinations = dests, .destination_count = 1},
        };
        st = herald_stage_append(s, &e, timeout_ms, err, sizeof err);
    }
    return st;
}

static herald_stage_claim *take_batch(herald_stage *s)
{
    herald_stage_batching b = {
        .max_events = 100, .max_bytes = 1u << 20, .flushing = 1, .now_ms = 2000,
        .row_commits = herald_stage_row_commits(s),
    };
    herald_stage_claim *c = NULL;
    int64_t ready = INT64_MAX;
    assert_int_equal(herald_stage_take(s, 0, &b, &c, &ready), 1);
    return c;
}

/* A stage with `count` events staged, all taken as one batch. */
static herald_stage_claim *stage_and_take(const fx *f, int count, herald_stage **s)
{
    *s = open_stage(f);
    assert_int_equal(stage_events(*s, 0, count, 1000), HERALD_OK);
    return take_batch(*s);
}

static int64_t fast_rows(const fx *f)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM outbox WHERE next_at = %lld",
             (long long)HERALD_QUEUE_FAST);
    return db_int(f->path, sql);
}

/* An acknowledged batch is only counted: no event row, exact counters. */
static void test_lane_acked_events_are_only_counted(void **state)
{
    fx *f = *state;
    herald_stage *s = NULL;
    herald_stage_claim *c = stage_and_take(f, 20, &s);
    assert_int_equal(c->count, 20);
    assert_string_equal(c->events[7], "{\"seq\":7}"); /* NUL-terminated in place */
    herald_stage_ack ack = {.requests = 1, .bytes_raw = 500, .bytes_sent = 100};
    assert_int_equal(herald_stage_claim_acked(c, &ack), HERALD_CLAIM_TAKEN);
    char err[256] = "";
    assert_int_equal(herald_stage_sync(s, 5000, err, sizeof err), HERALD_OK);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 0);
    /* The AUTOINCREMENT high-water mark: no event row was ever made. */
    assert_int_equal(
        db_int(f->path, "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events'"),
        0);
    assert_int_equal(db_int(f->path, "SELECT value FROM counters WHERE name = 'sent'"), 20);
    assert_int_equal(db_int(f->path, "SELECT value FROM counters WHERE name = 'accepted'"), 20);
    assert_int_equal(db_int(f->path, "SELECT value FROM counters WHERE name = 'bytes_raw'"), 500);
    herald_stage_close(s);
}

/* A revoked batch comes back as FAST rows with their ids; while the claim
 * is held its ring space is not reused (the producer is refused rather
 * than overwrite it), and freeing the claim gives the space back. */
static void test_lane_revoked_claim_keeps_its_ring_space(void **state)
{
    fx *f = *state;
    herald_stage *s = NULL;
    herald_stage_claim *c = stage_and_take(f, 10, &s);
    assert_int_equal(herald_stage_claim_revoke(c, 5000), HERALD_CLAIM_SETTLE);
    assert_int_equal(fast_rows(f), 10);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM meta WHERE key = 'fast_rows'"), 1);
    for (size_t i = 1; i < c->count; i++)
        assert_true(c->ids[i] > c->ids[i - 1] && c->ids[0] > 0);

    /* Fill the ring: about 1 MiB of records against the pinned claim. */
    int staged = 0;
    while (stage_events(s, 1000 + staged, 1, 0) == HERALD_OK)
        assert_true(++staged < 100000);
    assert_true(staged > 5000);
    assert_string_equal(c->events[3], "{\"seq\":3}");

    herald_queue_config qc = {.path = f->path, .max_events = 1000000, .max_bytes = 1u << 30,
                              .max_dead_letters = 1000};
    herald_queue *q = NULL;
    char err[256] = "";
    assert_int_equal(herald_queue_open(&q, &qc, err, sizeof err), HERALD_OK);
    assert_int_equal(herald_queue_unmark_fast(q, "d", c->ids, c->count), HERALD_OK);
    assert_int_equal(fast_rows(f), 0);
    herald_stage_claim_free(c);
    assert_int_equal(stage_events(s, 900000, 1, 5000), HERALD_OK);
    herald_stage_close(s);
    herald_queue_close(q);
}

/* The ingest thread cannot commit (another connection holds the write
 * lock): the revoke gives up, and once the lock goes the events are plain
 * rows, due at once (FAST rows written meanwhile are made due). */
static void test_revoke_gives_up_while_the_queue_is_locked(void **state)
{
    fx *f = *state;
    herald_stage *s = NULL;
    herald_stage_claim *c = stage_and_take(f, 10, &s);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(herald_stage_claim_revoke(c, 300), HERALD_CLAIM_TAKEN); /* the stage's now */
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[256] = "";
    assert_int_equal(herald_stage_sync(s, 10000, err, sizeof err), HERALD_OK);
    int64_t due = 0;
    for (int tries = 0; tries < 500 && due < 10; tries++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        due = db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'd' AND next_at = 0");
    }
    assert_int_equal(due, 10);
    assert_int_equal(fast_rows(f), 0);
    herald_stage_close(s);
}

/* Closed with a batch in flight: the close commits its events (FAST rows,
 * released at the next open); the request, which outlives the stage, still
 * reads its events and settles them. */
static void test_close_with_a_claim_in_flight(void **state)
{
    fx *f = *state;
    herald_stage *s = NULL;
    herald_stage_claim *c = stage_and_take(f, 5, &s);
    herald_stage_close(s);
    assert_int_equal(fast_rows(f), 5);
    assert_int_equal(herald_stage_claim_revoke(c, 0), HERALD_CLAIM_SETTLE);
    assert_string_equal(c->events[4], "{\"seq\":4}");
    herald_stage_claim_free(c);
}

/* Rows committed since the delivery thread looked at the queue go first:
 * the lane takes nothing and asks to be asked again at once. */
static void test_take_waits_for_rows_committed_meanwhile(void **state)
{
    fx *f = *state;
    herald_stage *s = open_stage(f);
    assert_int_equal(stage_events(s, 0, 5, 1000), HERALD_OK);
    herald_stage_batching b = {
        .max_events = 100, .max_bytes = 1u << 20, .flushing = 1, .now_ms = 2000,
        .row_commits = herald_stage_row_commits(s) + 1,
    };
    herald_stage_claim *c = NULL;
    int64_t ready = INT64_MAX;
    assert_int_equal(herald_stage_take(s, 0, &b, &c, &ready), 0);
    assert_null(c);
    assert_int_equal(ready, 2001);
    herald_stage_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_then_recover_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partly_committed_log_is_not_replayed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_torn_record_is_not_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_owner_file_is_left_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_files_are_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_file_does_not_stop_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_times_out_while_the_file_is_locked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_large_event_commits_directly_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_file_mode_and_background_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_bytes_sizes_the_file_and_zero_turns_it_off,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject_new_counts_staged_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lane_acked_events_are_only_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lane_revoked_claim_keeps_its_ring_space, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_revoke_gives_up_while_the_queue_is_locked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_with_a_claim_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_waits_for_rows_committed_meanwhile, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("staging", tests, NULL, NULL);
}
