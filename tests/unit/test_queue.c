/* Unit tests: the durable queue (src/queue.c) on temp files — migrations,
 * corrupt files, bounds under both overflow policies, settlement, fetch,
 * metadata, adoption, dead letters and replay. State is checked through a
 * separate SQLite connection to the same file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"

/* ---- fixture: a temp dir with one queue path ---- */

typedef struct fx {
    char dir[512];
    char path[600];
    herald_queue *q;
    herald_queue_config cfg;
    herald_logger logger;
    char log[2048];
    int warnings;
    char err[512];
} fx;

static void capture_log(herald_log_level level, const char *message, void *userdata)
{
    fx *f = userdata;
    if (level <= HERALD_LOG_WARN)
        f->warnings++;
    size_t used = strlen(f->log);
    snprintf(f->log + used, sizeof f->log - used, "%s\n", message);
}

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
    snprintf(f->dir, sizeof f->dir, "%s/herald-queue-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/queue.db", f->dir);
    f->logger.fn = capture_log;
    f->logger.userdata = f;
    f->logger.level = HERALD_LOG_DEBUG;
    f->cfg.path = f->path;
    f->cfg.durability = HERALD_DURABILITY_PROCESS;
    f->cfg.max_events = 1000;
    f->cfg.max_bytes = 1u << 20;
    f->cfg.max_dead_letters = 1000;
    f->cfg.overflow_policy = HERALD_OVERFLOW_DROP_OLDEST;
    f->cfg.logger = &f->logger;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    herald_queue_close(f->q);
    remove_tree(f->dir);
    free(f);
    return 0;
}

static void open_queue(fx *f)
{
    herald_queue_close(f->q);
    f->q = NULL;
    f->err[0] = '\0';
    herald_status st = herald_queue_open(&f->q, &f->cfg, f->err, sizeof f->err);
    if (st != HERALD_OK)
        fail_msg("herald_queue_open: %d: %s", st, f->err);
    assert_non_null(f->q);
}

static void close_queue(fx *f)
{
    herald_queue_close(f->q);
    f->q = NULL;
}

/* ---- direct SQLite access to the file ---- */

static sqlite3 *db_open(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        fail_msg("sqlite3_open_v2(%s): %s", path, db ? sqlite3_errmsg(db) : "?");
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void db_exec(const char *path, const char *sql)
{
    sqlite3 *db = db_open(path);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        char copy[256];
        snprintf(copy, sizeof copy, "%s", msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(db);
        fail_msg("%s: %s", sql, copy);
    }
    sqlite3_close(db);
}

/* A single integer from a query (text_arg binds ?1 when not NULL). */
static int64_t db_int(const char *path, const char *sql, const char *text_arg)
{
    sqlite3 *db = db_open(path);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        char copy[256];
        snprintf(copy, sizeof copy, "%s", sqlite3_errmsg(db));
        sqlite3_close(db);
        fail_msg("%s: %s", sql, copy);
    }
    if (text_arg)
        sqlite3_bind_text(s, 1, text_arg, -1, SQLITE_TRANSIENT);
    int64_t v = -999999;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* A single text value (malloc'ed, or NULL). */
static char *db_text(const char *path, const char *sql)
{
    sqlite3 *db = db_open(path);
    sqlite3_stmt *s = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
        sqlite3_column_type(s, 0) != SQLITE_NULL) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        out = strdup(t);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

static void assert_db_text(const char *path, const char *sql, const char *expected)
{
    char *t = db_text(path, sql);
    if (t == NULL)
        fail_msg("%s: no value (expected \"%s\")", sql, expected);
    if (strcmp(t, expected) != 0) {
        char copy[512];
        snprintf(copy, sizeof copy, "%s", t);
        free(t);
        fail_msg("%s: \"%s\", expected \"%s\"", sql, copy, expected);
    }
    free(t);
}

static int64_t count_rows(fx *f, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    return db_int(f->path, sql, NULL);
}

static herald_stats stats_of(fx *f)
{
    herald_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    assert_int_equal(herald_queue_stats(f->q, &s), HERALD_OK);
    return s;
}

/* ---- pushing ---- */

static const char *const ONE_DEST[] = {"a"};
static const char *const TWO_DESTS[] = {"a", "b"};

/* A body of exactly `length` bytes: {"n":N,"pad":"xxx..."} */
static void make_body(char *buf, size_t length, int n)
{
    int head = snprintf(buf, length + 1, "{\"n\":%d,\"pad\":\"", n);
    assert_true(head > 0 && (size_t)head + 2 <= length);
    memset(buf + head, 'x', length - (size_t)head - 2);
    memcpy(buf + length - 2, "\"}", 2);
    buf[length] = '\0';
}

static herald_status push_body(fx *f, int64_t now, const char *body, const char *const *dests,
                               size_t ndest, uint64_t *evicted)
{
    uint64_t ev = 12345;
    f->err[0] = '\0';
    herald_status st = herald_queue_push(f->q, now, "track", body, strlen(body), dests, ndest, 0,
                                         NULL, 0, &ev, NULL, NULL, f->err, sizeof f->err);
    if (evicted)
        *evicted = ev;
    return st;
}

static void push_n(fx *f, int64_t now, size_t length, int n, const char *const *dests, size_t nd)
{
    char body[4096];
    make_body(body, length, n);
    uint64_t ev = 0;
    herald_status st = push_body(f, now, body, dests, nd, &ev);
    if (st != HERALD_OK)
        fail_msg("push %d: %d %s", n, st, f->err);
}

static void push_text(fx *f, const char *body, const char *const *dests, size_t n)
{
    uint64_t ev = 0;
    herald_status st = herald_queue_push(f->q, 1000, "track", body, strlen(body), dests, n, 0, NULL,
                                         0, &ev, NULL, NULL, f->err, sizeof f->err);
    if (st != HERALD_OK)
        fail_msg("push %s: %d %s", body, st, f->err);
}

static herald_settlement settlement(herald_settle_kind kind, const int64_t *ids, size_t n,
                                    int64_t now)
{
    herald_settlement s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.event_ids = ids;
    s.count = n;
    s.now_ms = now;
    s.max_attempts = 10;
    s.count_attempt = 1;
    return s;
}

static void fetch(fx *f, const char *dest, int64_t now, size_t limit, herald_queue_row **rows,
                  size_t *count)
{
    assert_int_equal(herald_queue_fetch(f->q, dest, now, limit, rows, count), HERALD_OK);
}

/* ---- schema and migrations ---- */

static void assert_schema_current(fx *f)
{
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), HERALD_QUEUE_SCHEMA_VERSION);
    static const char *const tables[] = {"meta", "counters", "events", "outbox", "dead_letters"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        int64_t n = db_int(f->path,
                           "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                           tables[i]);
        if (n != 1)
            fail_msg("table %s missing", tables[i]);
    }
}

static void test_fresh_file_schema(void **state)
{
    fx *f = *state;
    open_queue(f);
    assert_schema_current(f);
    assert_db_text(f->path, "PRAGMA journal_mode", "wal");
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    herald_stats s = stats_of(f);
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.pending, 0);
    assert_int_equal(s.dead_letters, 0);
    assert_int_equal(f->warnings, 0);
}

static void test_file_created_private_despite_umask(void **state)
{
    fx *f = *state;
    mode_t old = umask(0);
    open_queue(f);
    umask(old);
    push_n(f, 1000, 64, 1, ONE_DEST, 1);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char wal[700];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_migrates_empty_v0_file(void **state)
{
    fx *f = *state;
    /* A real database with user_version 0 and no tables. */
    db_exec(f->path, "CREATE TABLE scratch(x); DROP TABLE scratch; PRAGMA user_version = 0;");
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM sqlite_master", NULL), 0);
    open_queue(f);
    assert_schema_current(f);
    push_n(f, 1000, 64, 1, ONE_DEST, 1);
    assert_int_equal(count_rows(f, "events"), 1);
}

static void test_migrates_v0_file_keeping_foreign_tables(void **state)
{
    fx *f = *state;
    db_exec(f->path, "CREATE TABLE other(x); INSERT INTO other VALUES (42);");
    open_queue(f);
    assert_schema_current(f);
    assert_int_equal(db_int(f->path, "SELECT x FROM other", NULL), 42);
}

static void test_zero_byte_file_is_migrated(void **state)
{
    fx *f = *state;
    int fd = open(f->path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    open_queue(f);
    assert_schema_current(f);
}

/* The schema as version 1 wrote it (events without AUTOINCREMENT). */
static const char v1_schema[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
    "CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE events(id INTEGER PRIMARY KEY, created_at INTEGER NOT NULL,"
    " type TEXT NOT NULL, bytes INTEGER NOT NULL, body BLOB NOT NULL);"
    "CREATE TABLE outbox(dest TEXT NOT NULL, event_id INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(dest, event_id)) WITHOUT ROWID;"
    "CREATE INDEX outbox_event ON outbox(event_id);"
    "CREATE TABLE dead_letters(id INTEGER PRIMARY KEY, event_id INTEGER, dest TEXT NOT NULL,"
    " failed_at INTEGER NOT NULL, http_status INTEGER NOT NULL, reason TEXT NOT NULL,"
    " response TEXT, body BLOB NOT NULL);"
    "PRAGMA user_version = 1;";

static void test_migrates_v1_file_keeping_data(void **state)
{
    fx *f = *state;
    if (HERALD_QUEUE_SCHEMA_VERSION < 2)
        skip();
    db_exec(f->path, v1_schema);
    db_exec(f->path,
            "INSERT INTO events VALUES (5, 1000, 'track', 9, CAST('{\"n\":5}  ' AS BLOB));"
            "INSERT INTO events VALUES (7, 1001, 'page', 9, CAST('{\"n\":7}  ' AS BLOB));"
            "INSERT INTO outbox VALUES ('a', 5, 2, 4000), ('a', 7, 0, 0), ('b', 7, 0, 0);"
            "INSERT INTO meta VALUES ('anonymous_id', 'anon-v1');"
            "INSERT INTO counters VALUES ('accepted', 2), ('sent', 11);"
            "INSERT INTO dead_letters VALUES (1, 3, 'a', 900, 400, 'HTTP 400', NULL, "
            "CAST('{\"n\":3}' AS BLOB));");
    open_queue(f);
    assert_schema_current(f);
    /* Everything is kept, ids included. */
    assert_int_equal(count_rows(f, "events"), 2);
    assert_int_equal(db_int(f->path, "SELECT sum(id) FROM events", NULL), 12);
    assert_int_equal(count_rows(f, "outbox"), 3);
    assert_int_equal(db_int(f->path, "SELECT attempts FROM outbox WHERE event_id = 5", NULL), 2);
    assert_int_equal(count_rows(f, "dead_letters"), 1);
    char *v = NULL;
    assert_int_equal(herald_queue_meta_get(f->q, "anonymous_id", &v), HERALD_OK);
    assert_string_equal(v, "anon-v1");
    free(v);
    herald_stats st = stats_of(f);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.queued_bytes, 18);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.sent, 11);
    assert_int_equal(st.pending, 3);
    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 5000, 10, &rows, &n);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].event_id, 5);
    assert_int_equal(rows[0].attempts, 2);
    assert_string_equal(rows[0].body, "{\"n\":5}  ");
    herald_queue_rows_free(rows, n);
    /* New events continue after the migrated ones, and a deleted newest id
     * is not handed out again. */
    push_n(f, 2000, 40, 8, ONE_DEST, 1);
    int64_t id8 = db_int(f->path, "SELECT max(id) FROM events", NULL);
    assert_true(id8 > 7);
    int64_t ids[] = {id8};
    herald_settlement s = settlement(HERALD_SETTLE_ACK, ids, 1, 3000);
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);
    push_n(f, 2000, 40, 9, ONE_DEST, 1);
    assert_true(db_int(f->path, "SELECT max(id) FROM events", NULL) > id8);
    /* Reopening a migrated file changes nothing. */
    close_queue(f);
    open_queue(f);
    assert_schema_current(f);
    assert_int_equal(count_rows(f, "events"), 3);
}

static void test_newer_schema_refused(void **state)
{
    fx *f = *state;
    char sql[64];
    snprintf(sql, sizeof sql, "CREATE TABLE x(a); PRAGMA user_version = %d;",
             HERALD_QUEUE_SCHEMA_VERSION + 1);
    db_exec(f->path, sql);
    herald_queue *q = (herald_queue *)(uintptr_t)0x1;
    char err[512] = "";
    assert_int_equal(herald_queue_open(&q, &f->cfg, err, sizeof err), HERALD_E_STORAGE);
    assert_null(q);
    char newer[32], ours[32];
    snprintf(newer, sizeof newer, "%d", HERALD_QUEUE_SCHEMA_VERSION + 1);
    snprintf(ours, sizeof ours, "%d", HERALD_QUEUE_SCHEMA_VERSION);
    if (strstr(err, newer) == NULL || strstr(err, ours) == NULL)
        fail_msg("error does not name both versions: \"%s\"", err);
    assert_non_null(strstr(err, "newer"));
    /* The file is left alone: not moved aside, not migrated. */
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), HERALD_QUEUE_SCHEMA_VERSION + 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
                            NULL),
                     0);
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        assert_null(strstr(e->d_name, "corrupt"));
    closedir(d);
}

static void test_garbage_file_moved_aside(void **state)
{
    fx *f = *state;
    unsigned char garbage[8192];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (unsigned char)((i * 7919u + 13u) & 0xffu);
    memcpy(garbage, "this is not a database", 22);
    FILE *fp = fopen(f->path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(garbage, 1, sizeof garbage, fp), sizeof garbage);
    fclose(fp);

    time_t t0 = time(NULL);
    open_queue(f);
    time_t t1 = time(NULL);

    /* Exactly one "<path>.corrupt-<secs>" with the old bytes. */
    int found = 0;
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    struct dirent *e;
    char moved[1024] = "";
    while ((e = readdir(d)) != NULL) {
        const char *prefix = "queue.db.corrupt-";
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        const char *digits = e->d_name + strlen(prefix);
        char *end = NULL;
        long long secs = strtoll(digits, &end, 10);
        if (end == digits || *end != '\0')
            continue; /* e.g. its -wal/-shm companions */
        assert_in_range(secs, (long long)t0, (long long)t1);
        snprintf(moved, sizeof moved, "%s/%s", f->dir, e->d_name);
        found++;
    }
    closedir(d);
    assert_int_equal(found, 1);
    unsigned char back[sizeof garbage];
    fp = fopen(moved, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(back, 1, sizeof back, fp), sizeof back);
    fclose(fp);
    assert_memory_equal(back, garbage, sizeof garbage);

    /* Logged at WARN, naming the new location. */
    assert_true(f->warnings >= 1);
    assert_non_null(strstr(f->log, "corrupt"));
    assert_non_null(strstr(f->log, moved));

    /* A working fresh queue in its place. */
    assert_schema_current(f);
    push_n(f, 1000, 64, 1, ONE_DEST, 1);
    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 1000, 10, &rows, &n);
    assert_int_equal(n, 1);
    herald_queue_rows_free(rows, n);
}

static void test_reopen_keeps_data(void **state)
{
    fx *f = *state;
    open_queue(f);
    for (int i = 1; i <= 3; i++)
        push_n(f, 1000 + i, 80, i, TWO_DESTS, 2);
    assert_int_equal(herald_queue_meta_set(f->q, "anonymous_id", "abc"), HERALD_OK);
    int64_t one = 1;
    herald_settlement s = settlement(HERALD_SETTLE_ACK, &one, 1, 2000);
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);
    close_queue(f);

    open_queue(f);
    assert_schema_current(f);
    herald_stats st = stats_of(f);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.queued_bytes, 240);
    assert_int_equal(st.pending, 5);
    assert_int_equal(st.accepted, 3);
    assert_int_equal(st.sent, 1);
    char *v = NULL;
    assert_int_equal(herald_queue_meta_get(f->q, "anonymous_id", &v), HERALD_OK);
    assert_string_equal(v, "abc");
    free(v);
    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "b", 5000, 10, &rows, &n);
    assert_int_equal(n, 3);
    char expected[128];
    for (size_t i = 0; i < n; i++) {
        make_body(expected, 80, (int)i + 1);
        assert_int_equal(rows[i].length, 80);
        assert_string_equal(rows[i].body, expected);
        assert_int_equal(rows[i].created_at, 1001 + (int64_t)i);
    }
    herald_queue_rows_free(rows, n);
    fetch(f, "a", 5000, 10, &rows, &n);
    assert_int_equal(n, 2);
    herald_queue_rows_free(rows, n);
}

static void test_counters_rebuilt_on_open(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 50, 1, ONE_DEST, 1);
    push_n(f, 1000, 70, 2, ONE_DEST, 1);
    close_queue(f);
    /* Counters out of step with the tables are repaired at open. */
    db_exec(f->path, "UPDATE counters SET value = 999 WHERE name IN ('queue_events','queue_bytes');");
    open_queue(f);
    herald_stats st = stats_of(f);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.queued_bytes, 120);
}

/* ---- push and fetch ---- */

static void test_push_and_fetch(void **state)
{
    fx *f = *state;
    open_queue(f);
    const char *body = "{\"type\":\"track\",\"event\":\"e\"}";
    uint64_t ev = 99;
    assert_int_equal(herald_queue_push(f->q, 4242, "track", body, strlen(body), ONE_DEST, 1, 0,
                                       NULL, 0, &ev, NULL, NULL, f->err, sizeof f->err),
                     HERALD_OK);
    assert_int_equal(ev, 0);
    assert_int_equal(count_rows(f, "events"), 1);
    assert_db_text(f->path, "SELECT type FROM events", "track");
    assert_db_text(f->path, "SELECT CAST(body AS TEXT) FROM events", body);
    assert_int_equal(db_int(f->path, "SELECT created_at FROM events", NULL), 4242);
    assert_int_equal(db_int(f->path, "SELECT bytes FROM events", NULL), (int64_t)strlen(body));
    assert_db_text(f->path, "SELECT dest FROM outbox", "a");

    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 4242, 10, &rows, &n);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].attempts, 0);
    assert_int_equal(rows[0].created_at, 4242);
    assert_int_equal(rows[0].length, strlen(body));
    assert_string_equal(rows[0].body, body);
    assert_true(rows[0].event_id > 0);
    herald_queue_rows_free(rows, n);

    fetch(f, "b", 4242, 10, &rows, &n);
    assert_int_equal(n, 0);
    herald_queue_rows_free(rows, n);
    fetch(f, "a", 4242, 0, &rows, &n);
    assert_int_equal(n, 0);
    assert_null(rows);

    int pending = -1;
    assert_int_equal(herald_queue_has_pending(f->q, "a", &pending), HERALD_OK);
    assert_int_equal(pending, 1);
    assert_int_equal(herald_queue_has_pending(f->q, "b", &pending), HERALD_OK);
    assert_int_equal(pending, 0);
    uint64_t count = 99;
    assert_int_equal(herald_queue_pending_count(f->q, "a", &count), HERALD_OK);
    assert_int_equal(count, 1);
    herald_stats s = stats_of(f);
    assert_int_equal(s.accepted, 1);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.queued_bytes, strlen(body));
    assert_int_equal(s.pending, 1);
}

static void test_fetch_order_limit_and_next_at(void **state)
{
    fx *f = *state;
    open_queue(f);
    for (int i = 1; i <= 4; i++)
        push_n(f, 1000, 40, i, ONE_DEST, 1);
    int64_t two = 2;
    herald_settlement s = settlement(HERALD_SETTLE_RETRY, &two, 1, 1000);
    s.next_at_ms = 5000;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);

    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 1000, 10, &rows, &n);
    assert_int_equal(n, 3);
    assert_int_equal(rows[0].event_id, 1);
    assert_int_equal(rows[1].event_id, 3);
    assert_int_equal(rows[2].event_id, 4);
    herald_queue_rows_free(rows, n);

    fetch(f, "a", 1000, 2, &rows, &n);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].event_id, 1);
    assert_int_equal(rows[1].event_id, 3);
    herald_queue_rows_free(rows, n);

    fetch(f, "a", 4999, 10, &rows, &n);
    assert_int_equal(n, 3);
    herald_queue_rows_free(rows, n);

    fetch(f, "a", 5000, 10, &rows, &n);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rows[i].event_id, (int64_t)i + 1);
    assert_int_equal(rows[1].attempts, 1);
    assert_int_equal(rows[0].attempts, 0);
    herald_queue_rows_free(rows, n);

    int64_t next = 0;
    assert_int_equal(herald_queue_next_due(f->q, "a", 1000, &next), HERALD_OK);
    assert_int_equal(next, 5000);
    assert_int_equal(herald_queue_next_due(f->q, "a", 5000, &next), HERALD_OK);
    assert_int_equal(next, -1);
    assert_int_equal(herald_queue_next_due(f->q, "zz", 0, &next), HERALD_OK);
    assert_int_equal(next, -1);
}

/* ---- bounds ---- */

static void test_reject_new_at_max_events(void **state)
{
    fx *f = *state;
    f->cfg.max_events = 3;
    f->cfg.overflow_policy = HERALD_OVERFLOW_REJECT_NEW;
    open_queue(f);
    for (int i = 1; i <= 3; i++)
        push_n(f, 1000, 40, i, ONE_DEST, 1);
    char body[64];
    make_body(body, 40, 4);
    uint64_t ev = 77;
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, &ev), HERALD_E_QUEUE_FULL);
    assert_int_equal(ev, 0);
    assert_non_null(strstr(f->err, "full"));
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, &ev), HERALD_E_QUEUE_FULL);
    assert_int_equal(count_rows(f, "events"), 3);
    assert_int_equal(count_rows(f, "outbox"), 3);
    assert_int_equal(count_rows(f, "dead_letters"), 0);
    /* The first three are the ones kept. */
    assert_int_equal(db_int(f->path, "SELECT max(id) FROM events", NULL), 3);
    herald_stats s = stats_of(f);
    assert_int_equal(s.queued, 3);
    assert_int_equal(s.accepted, 3);
    assert_int_equal(s.evicted, 0);
    assert_int_equal(s.dead, 0);

    /* Room again once one is delivered. */
    int64_t one = 1;
    herald_settlement st = settlement(HERALD_SETTLE_ACK, &one, 1, 1000);
    assert_int_equal(herald_queue_settle(f->q, "a", &st, NULL, NULL), HERALD_OK);
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, &ev), HERALD_OK);
    assert_int_equal(count_rows(f, "events"), 3);
}

static void test_reject_new_at_max_bytes(void **state)
{
    fx *f = *state;
    f->cfg.max_bytes = 100;
    f->cfg.overflow_policy = HERALD_OVERFLOW_REJECT_NEW;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    push_n(f, 1000, 40, 2, ONE_DEST, 1);
    char body[64];
    make_body(body, 40, 3);
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, NULL), HERALD_E_QUEUE_FULL);
    assert_int_equal(count_rows(f, "events"), 2);
    herald_stats s = stats_of(f);
    assert_int_equal(s.queued_bytes, 80);
    /* 20 bytes still fit exactly. */
    make_body(body, 20, 4);
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, NULL), HERALD_OK);
    s = stats_of(f);
    assert_int_equal(s.queued_bytes, 100);
    assert_int_equal(count_rows(f, "events"), 3);
}

static void test_drop_oldest_at_max_events(void **state)
{
    fx *f = *state;
    f->cfg.max_events = 3;
    open_queue(f);
    uint64_t evicted[5];
    for (int i = 1; i <= 5; i++) {
        char body[64];
        make_body(body, 40, i);
        assert_int_equal(push_body(f, 1000 + i, body, TWO_DESTS, 2, &evicted[i - 1]), HERALD_OK);
    }
    assert_int_equal(evicted[0], 0);
    assert_int_equal(evicted[2], 0);
    assert_int_equal(evicted[3], 1);
    assert_int_equal(evicted[4], 1);
    assert_int_equal(count_rows(f, "events"), 3);
    assert_int_equal(db_int(f->path, "SELECT min(id) FROM events", NULL), 3);
    /* Evicted events leave no outbox rows behind. */
    assert_int_equal(count_rows(f, "outbox"), 6);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE event_id < 3", NULL), 0);
    /* One dead letter per destination per evicted event. */
    assert_int_equal(count_rows(f, "dead_letters"), 4);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM dead_letters WHERE reason = 'evicted'",
                            NULL),
                     4);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM dead_letters WHERE dest = 'a'", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM dead_letters WHERE dest = 'b'", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM dead_letters WHERE http_status = 0",
                            NULL),
                     4);
    assert_int_equal(db_int(f->path, "SELECT count(DISTINCT event_id) FROM dead_letters", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT max(event_id) FROM dead_letters", NULL), 2);
    char expected[64];
    make_body(expected, 40, 1);
    char *body = db_text(f->path, "SELECT CAST(body AS TEXT) FROM dead_letters WHERE event_id = 1");
    assert_non_null(body);
    assert_string_equal(body, expected);
    free(body);
    herald_stats s = stats_of(f);
    assert_int_equal(s.evicted, 2);
    assert_int_equal(s.dead, 4);
    assert_int_equal(s.dead_letters, 4);
    assert_int_equal(s.queued, 3);
    assert_int_equal(s.queued_bytes, 120);
    assert_int_equal(s.pending, 6);
    assert_int_equal(s.accepted, 5);
    assert_int_equal(f->warnings, 0);
}

static void test_drop_oldest_at_max_bytes(void **state)
{
    fx *f = *state;
    f->cfg.max_bytes = 100;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    push_n(f, 1000, 40, 2, ONE_DEST, 1);
    char body[128];
    make_body(body, 40, 3);
    uint64_t ev = 0;
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, &ev), HERALD_OK);
    assert_int_equal(ev, 1);
    assert_int_equal(count_rows(f, "events"), 2);
    assert_int_equal(db_int(f->path, "SELECT min(id) FROM events", NULL), 2);
    herald_stats s = stats_of(f);
    assert_int_equal(s.queued_bytes, 80);
    /* 90 bytes need both remaining events gone. */
    make_body(body, 90, 4);
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, &ev), HERALD_OK);
    assert_int_equal(ev, 2);
    assert_int_equal(count_rows(f, "events"), 1);
    s = stats_of(f);
    assert_int_equal(s.queued_bytes, 90);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.evicted, 3);
    assert_int_equal(s.dead, 3);
    assert_int_equal(count_rows(f, "dead_letters"), 3);
}

static void test_event_larger_than_max_bytes(void **state)
{
    fx *f = *state;
    f->cfg.max_bytes = 100;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    char body[256];
    make_body(body, 101, 2);
    uint64_t ev = 55;
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, &ev), HERALD_E_QUEUE_FULL);
    assert_int_equal(ev, 0);
    assert_true(strlen(f->err) > 0);
    /* Nothing was evicted for it. */
    assert_int_equal(count_rows(f, "events"), 1);
    assert_int_equal(count_rows(f, "dead_letters"), 0);
    herald_stats s = stats_of(f);
    assert_int_equal(s.evicted, 0);
    assert_int_equal(s.accepted, 1);
    /* Exactly max_bytes is allowed (evicting the rest). */
    make_body(body, 100, 3);
    assert_int_equal(push_body(f, 1000, body, ONE_DEST, 1, &ev), HERALD_OK);
    assert_int_equal(ev, 1);
}

static void test_max_dead_letters_trims_oldest(void **state)
{
    fx *f = *state;
    f->cfg.max_events = 1;
    f->cfg.max_dead_letters = 2;
    open_queue(f);
    for (int i = 1; i <= 5; i++)
        push_n(f, 1000, 40, i, ONE_DEST, 1);
    /* Four evictions, two newest dead letters kept (bodies n = 3 and 4). */
    assert_int_equal(count_rows(f, "dead_letters"), 2);
    assert_int_equal(db_int(f->path, "SELECT min(json_extract(body, '$.n')) FROM dead_letters", NULL),
                     3);
    assert_int_equal(db_int(f->path, "SELECT max(json_extract(body, '$.n')) FROM dead_letters", NULL),
                     4);
    herald_stats s = stats_of(f);
    assert_int_equal(s.evicted, 4);
    assert_int_equal(s.dead, 4);
    assert_int_equal(s.dead_letters, 2);

    /* Settlement dead letters are trimmed too. */
    int64_t last = db_int(f->path, "SELECT id FROM events", NULL);
    herald_settlement st = settlement(HERALD_SETTLE_DEAD, &last, 1, 2000);
    st.http_status = 400;
    st.reason = "HTTP 400";
    assert_int_equal(herald_queue_settle(f->q, "a", &st, NULL, NULL), HERALD_OK);
    assert_int_equal(count_rows(f, "dead_letters"), 2);
    assert_int_equal(db_int(f->path, "SELECT min(json_extract(body, '$.n')) FROM dead_letters", NULL),
                     4);
    assert_int_equal(db_int(f->path, "SELECT max(json_extract(body, '$.n')) FROM dead_letters", NULL),
                     5);
    assert_db_text(f->path, "SELECT reason FROM dead_letters ORDER BY id DESC LIMIT 1", "HTTP 400");
}

static void test_max_dead_letters_zero_keeps_none(void **state)
{
    fx *f = *state;
    f->cfg.max_events = 1;
    f->cfg.max_dead_letters = 0;
    open_queue(f);
    for (int i = 1; i <= 3; i++)
        push_n(f, 1000, 40, i, ONE_DEST, 1);
    assert_int_equal(count_rows(f, "dead_letters"), 0);
    herald_stats s = stats_of(f);
    assert_int_equal(s.evicted, 2);
    assert_int_equal(s.dead, 2);
}

/* ---- settlement ---- */

static void test_settle_ack_one_destination(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    push_n(f, 1000, 60, 2, ONE_DEST, 1);
    int64_t one = 1;
    herald_settlement s = settlement(HERALD_SETTLE_ACK, &one, 1, 2000);
    s.requests = 1;
    s.bytes_raw = 300;
    s.bytes_sent = 120;
    uint64_t sent = 99, dead = 99;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, &sent, &dead), HERALD_OK);
    assert_int_equal(sent, 1);
    assert_int_equal(dead, 0);
    assert_int_equal(count_rows(f, "events"), 1);
    assert_int_equal(count_rows(f, "outbox"), 1);
    assert_int_equal(db_int(f->path, "SELECT id FROM events", NULL), 2);
    herald_stats st = stats_of(f);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.queued_bytes, 60);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.bytes_raw, 300);
    assert_int_equal(st.bytes_sent, 120);
    assert_int_equal(st.dead, 0);

    /* Acking again (already settled) changes nothing. */
    s.requests = 0;
    s.bytes_raw = 0;
    s.bytes_sent = 0;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, &sent, &dead), HERALD_OK);
    assert_int_equal(sent, 0);
    st = stats_of(f);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.queued, 1);
}

static void test_settle_ack_two_destinations(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, TWO_DESTS, 2);
    int64_t one = 1;
    herald_settlement s = settlement(HERALD_SETTLE_ACK, &one, 1, 2000);
    uint64_t sent = 0;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, &sent, NULL), HERALD_OK);
    assert_int_equal(sent, 1);
    /* b still owes it: the event stays. */
    assert_int_equal(count_rows(f, "events"), 1);
    assert_int_equal(count_rows(f, "outbox"), 1);
    assert_db_text(f->path, "SELECT dest FROM outbox", "b");
    herald_stats st = stats_of(f);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.queued_bytes, 40);
    assert_int_equal(st.pending, 1);
    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 2000, 10, &rows, &n);
    assert_int_equal(n, 0);
    herald_queue_rows_free(rows, n);
    fetch(f, "b", 2000, 10, &rows, &n);
    assert_int_equal(n, 1);
    herald_queue_rows_free(rows, n);

    assert_int_equal(herald_queue_settle(f->q, "b", &s, &sent, NULL), HERALD_OK);
    assert_int_equal(sent, 1);
    assert_int_equal(count_rows(f, "events"), 0);
    assert_int_equal(count_rows(f, "outbox"), 0);
    st = stats_of(f);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.queued_bytes, 0);
    assert_int_equal(st.sent, 2);
}

static void test_settle_retry_schedules(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    push_n(f, 1000, 40, 2, ONE_DEST, 1);
    int64_t ids[] = {1, 2};
    herald_settlement s = settlement(HERALD_SETTLE_RETRY, ids, 2, 2000);
    s.next_at_ms = 3000;
    s.max_attempts = 3;
    s.expire_before_ms = 0;
    s.http_status = 503;
    s.reason = "HTTP 503";
    s.retried = 1;
    s.requests = 1;
    uint64_t sent = 9, dead = 9;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, &sent, &dead), HERALD_OK);
    assert_int_equal(sent, 0);
    assert_int_equal(dead, 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE attempts = 1", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE next_at = 3000", NULL), 2);
    herald_stats st = stats_of(f);
    assert_int_equal(st.retried, 1);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.dead, 0);

    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 2999, 10, &rows, &n);
    assert_int_equal(n, 0);
    herald_queue_rows_free(rows, n);
    fetch(f, "a", 3000, 10, &rows, &n);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].attempts, 1);
    herald_queue_rows_free(rows, n);
    int64_t next = 0;
    assert_int_equal(herald_queue_next_due(f->q, "a", 2000, &next), HERALD_OK);
    assert_int_equal(next, 3000);

    /* Second failure: attempts 2, still queued. */
    s.next_at_ms = 4000;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, &sent, &dead), HERALD_OK);
    assert_int_equal(dead, 0);
    assert_int_equal(db_int(f->path, "SELECT min(attempts) FROM outbox", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT max(next_at) FROM outbox", NULL), 4000);
}

static void test_settle_retry_gives_up_at_max_attempts(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    int64_t one = 1;
    herald_settlement s = settlement(HERALD_SETTLE_RETRY, &one, 1, 2000);
    s.max_attempts = 3;
    s.next_at_ms = 2500;
    s.http_status = 503;
    s.reason = "HTTP 503: busy";
    s.response = "busy";
    uint64_t dead = 9;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, &dead), HERALD_OK);
        assert_int_equal(dead, 0);
    }
    assert_int_equal(db_int(f->path, "SELECT attempts FROM outbox", NULL), 2);
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, &dead), HERALD_OK);
    assert_int_equal(dead, 1);
    assert_int_equal(count_rows(f, "outbox"), 0);
    assert_int_equal(count_rows(f, "events"), 0);
    assert_int_equal(count_rows(f, "dead_letters"), 1);
    assert_db_text(f->path, "SELECT reason FROM dead_letters", "gave up after 3 attempts: HTTP 503: busy");
    assert_int_equal(db_int(f->path, "SELECT http_status FROM dead_letters", NULL), 503);
    assert_db_text(f->path, "SELECT response FROM dead_letters", "busy");
    assert_db_text(f->path, "SELECT dest FROM dead_letters", "a");
    assert_int_equal(db_int(f->path, "SELECT failed_at FROM dead_letters", NULL), 2000);
    herald_stats st = stats_of(f);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.dead_letters, 1);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.queued_bytes, 0);
}

static void test_settle_retry_without_counting(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    int64_t one = 1;
    herald_settlement s = settlement(HERALD_SETTLE_RETRY, &one, 1, 2000);
    s.count_attempt = 0;
    s.max_attempts = 1;
    uint64_t dead = 9;
    for (int i = 0; i < 5; i++) {
        s.next_at_ms = 3000 + i;
        assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, &dead), HERALD_OK);
        assert_int_equal(dead, 0);
    }
    assert_int_equal(db_int(f->path, "SELECT attempts FROM outbox", NULL), 0);
    assert_int_equal(db_int(f->path, "SELECT next_at FROM outbox", NULL), 3004);
    assert_int_equal(count_rows(f, "dead_letters"), 0);
}

static void test_settle_retry_expired(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1); /* created_at 1000 */
    push_n(f, 2000, 40, 2, ONE_DEST, 1); /* created_at 2000 */
    int64_t ids[] = {1, 2};
    herald_settlement s = settlement(HERALD_SETTLE_RETRY, ids, 2, 9000);
    s.count_attempt = 0;
    s.expire_before_ms = 2000; /* strictly older than 2000 expires */
    s.next_at_ms = 9500;
    s.reason = "no response: timeout";
    uint64_t dead = 0;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, &dead), HERALD_OK);
    assert_int_equal(dead, 1);
    assert_int_equal(count_rows(f, "dead_letters"), 1);
    assert_int_equal(db_int(f->path, "SELECT event_id FROM dead_letters", NULL), 1);
    char *reason = db_text(f->path, "SELECT reason FROM dead_letters");
    assert_non_null(reason);
    assert_int_equal(strncmp(reason, "expired", 7), 0);
    assert_non_null(strstr(reason, "no response: timeout"));
    free(reason);
    assert_int_equal(db_int(f->path, "SELECT event_id FROM outbox", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT next_at FROM outbox", NULL), 9500);
}

static void test_settle_dead(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, TWO_DESTS, 2);
    push_n(f, 1000, 40, 2, ONE_DEST, 1);
    int64_t ids[] = {1, 2};
    herald_settlement s = settlement(HERALD_SETTLE_DEAD, ids, 2, 7000);
    s.http_status = 400;
    s.reason = "HTTP 400: bad request";
    s.response = "{\"error\":\"bad\"}";
    s.requests = 1;
    uint64_t sent = 9, dead = 9;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, &sent, &dead), HERALD_OK);
    assert_int_equal(sent, 0);
    assert_int_equal(dead, 2);
    assert_int_equal(count_rows(f, "dead_letters"), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM dead_letters WHERE http_status = 400 AND "
                                     "reason = 'HTTP 400: bad request' AND "
                                     "response = '{\"error\":\"bad\"}' AND dest = 'a' AND "
                                     "failed_at = 7000",
                            NULL),
                     2);
    char expected[64];
    make_body(expected, 40, 1);
    char *body = db_text(f->path, "SELECT CAST(body AS TEXT) FROM dead_letters WHERE event_id = 1");
    assert_non_null(body);
    assert_string_equal(body, expected);
    free(body);
    /* Event 1 is still owed to b; event 2 is gone. */
    assert_int_equal(count_rows(f, "events"), 1);
    assert_int_equal(db_int(f->path, "SELECT id FROM events", NULL), 1);
    assert_db_text(f->path, "SELECT dest FROM outbox", "b");
    herald_stats st = stats_of(f);
    assert_int_equal(st.dead, 2);
    assert_int_equal(st.dead_letters, 2);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.requests, 1);

    /* A NULL response is stored as NULL. */
    int64_t one = 1;
    s = settlement(HERALD_SETTLE_DEAD, &one, 1, 8000);
    s.http_status = 0;
    s.reason = NULL;
    assert_int_equal(herald_queue_settle(f->q, "b", &s, &sent, &dead), HERALD_OK);
    assert_int_equal(dead, 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM dead_letters WHERE dest = 'b' AND "
                                     "response IS NULL AND reason = ''",
                            NULL),
                     1);
    assert_int_equal(count_rows(f, "events"), 0);
}

/* Regression (was a bug: `dead++` ran unconditionally): a DEAD settlement
 * for an event the destination no longer holds (acked, or evicted while its
 * request was in flight) moves and counts nothing. */
static void test_settle_dead_of_missing_event_counts_nothing(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    int64_t ids[] = {1, 42};
    herald_settlement s = settlement(HERALD_SETTLE_ACK, ids, 1, 2000);
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);
    s = settlement(HERALD_SETTLE_DEAD, ids, 2, 3000);
    s.http_status = 400;
    s.reason = "HTTP 400";
    uint64_t dead = 9;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, &dead), HERALD_OK);
    assert_int_equal(count_rows(f, "dead_letters"), 0);
    herald_stats st = stats_of(f);
    assert_int_equal(dead, 0);
    assert_int_equal(st.dead, 0);
}

/* Regression (was a bug: "events(id INTEGER PRIMARY KEY)" without
 * AUTOINCREMENT handed out max(id) + 1, so the next event took the id of an
 * evicted or erased newest event, and a late ACK for the old one settled the
 * new one, losing it). Ids are never reused. */
static void test_event_ids_not_reused_after_delete(void **state)
{
    fx *f = *state;
    f->cfg.max_events = 1;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 1000, 10, &rows, &n); /* event 1 goes out in a request */
    assert_int_equal(n, 1);
    int64_t in_flight = rows[0].event_id;
    herald_queue_rows_free(rows, n);
    push_n(f, 1001, 40, 2, ONE_DEST, 1); /* evicts event 1 while in flight */
    int64_t new_id = db_int(f->path, "SELECT id FROM events", NULL);
    /* The request for event 1 succeeds; its ACK arrives now. */
    herald_settlement s = settlement(HERALD_SETTLE_ACK, &in_flight, 1, 2000);
    uint64_t sent = 9;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, &sent, NULL), HERALD_OK);
    assert_int_equal(count_rows(f, "outbox"), 1); /* event 2 still owed */
    assert_int_equal(sent, 0);
    assert_int_not_equal(new_id, in_flight);

    /* Erasing the newest event does not free its id either, not even
     * across a reopen. */
    push_text(f, "{\"anonymousId\":\"gone\"}", ONE_DEST, 1);
    int64_t erased_id = db_int(f->path, "SELECT max(id) FROM events", NULL);
    uint64_t erased = 0;
    assert_int_equal(herald_queue_erase_ids(f->q, "gone", NULL, NULL, 0, &erased), HERALD_OK);
    assert_int_equal(erased, 1);
    close_queue(f);
    open_queue(f);
    push_n(f, 3000, 40, 3, ONE_DEST, 1);
    assert_true(db_int(f->path, "SELECT max(id) FROM events", NULL) > erased_id);
}

/* ---- metadata, counters, adoption ---- */

static void test_meta(void **state)
{
    fx *f = *state;
    open_queue(f);
    char *v = (char *)(uintptr_t)0x1;
    assert_int_equal(herald_queue_meta_get(f->q, "user_id", &v), HERALD_OK);
    assert_null(v);
    assert_int_equal(herald_queue_meta_set(f->q, "user_id", "u-1"), HERALD_OK);
    assert_int_equal(herald_queue_meta_get(f->q, "user_id", &v), HERALD_OK);
    assert_string_equal(v, "u-1");
    free(v);
    assert_int_equal(herald_queue_meta_set(f->q, "user_id", "u-2"), HERALD_OK);
    assert_int_equal(herald_queue_meta_get(f->q, "user_id", &v), HERALD_OK);
    assert_string_equal(v, "u-2");
    free(v);
    assert_db_text(f->path, "SELECT value FROM meta WHERE key = 'user_id'", "u-2");
    assert_int_equal(herald_queue_meta_set(f->q, "user_id", NULL), HERALD_OK);
    assert_int_equal(herald_queue_meta_get(f->q, "user_id", &v), HERALD_OK);
    assert_null(v);
    assert_int_equal(count_rows(f, "meta"), 0);
}

static void test_count_and_stats_struct_size(void **state)
{
    fx *f = *state;
    open_queue(f);
    assert_int_equal(herald_queue_count(f->q, "rejected", 2), HERALD_OK);
    assert_int_equal(herald_queue_count(f->q, "rejected", 3), HERALD_OK);
    assert_int_equal(herald_queue_count(f->q, "rejected", 0), HERALD_OK);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    herald_stats s = stats_of(f);
    assert_int_equal(s.rejected, 5);
    assert_int_equal(s.accepted, 1);

    /* A caller that knows only the first fields gets only those. */
    herald_stats small;
    memset(&small, 0xab, sizeof small);
    small.struct_size = (uint32_t)offsetof(herald_stats, accepted);
    assert_int_equal(herald_queue_stats(f->q, &small), HERALD_OK);
    assert_int_equal(small.struct_size, offsetof(herald_stats, accepted));
    assert_int_equal(small.queued, 1);
    assert_int_equal(small.queued_bytes, 40);
    assert_int_equal(small.pending, 1);
    assert_int_equal(small.accepted, 0xababababababababULL);
    assert_int_equal(small.bytes_sent, 0xababababababababULL);
}

static void test_adopt_orphans(void **state)
{
    fx *f = *state;
    open_queue(f);
    /* Queued with no destination configured. */
    push_n(f, 1000, 40, 1, NULL, 0);
    push_n(f, 1000, 40, 2, NULL, 0);
    assert_int_equal(count_rows(f, "outbox"), 0);
    herald_stats s = stats_of(f);
    assert_int_equal(s.queued, 2);
    assert_int_equal(s.pending, 0);
    assert_int_equal(herald_queue_adopt(f->q, NULL, 0), HERALD_OK);
    assert_int_equal(count_rows(f, "outbox"), 0);
    assert_int_equal(herald_queue_adopt(f->q, ONE_DEST, 1), HERALD_OK);
    assert_int_equal(count_rows(f, "outbox"), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'a'", NULL), 2);
    /* Idempotent, and events another destination holds are not taken. */
    push_n(f, 1000, 40, 3, (const char *const[]){"c"}, 1);
    assert_int_equal(herald_queue_adopt(f->q, ONE_DEST, 1), HERALD_OK);
    assert_int_equal(count_rows(f, "outbox"), 3);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'a'", NULL), 2);
    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 1000, 10, &rows, &n);
    assert_int_equal(n, 2);
    herald_queue_rows_free(rows, n);
}

/* Orphans get a row for every destination adopting them at once (not only
 * for the first, whose new row must not count as "held by another"). */
static void test_adopt_gives_every_destination_a_row(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, NULL, 0);
    push_n(f, 1000, 40, 2, NULL, 0);
    push_n(f, 1000, 40, 3, (const char *const[]){"c"}, 1);
    const char *const three[] = {"a", "b", "z"};
    assert_int_equal(herald_queue_adopt(f->q, three, 3), HERALD_OK);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'a'", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'b'", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE dest = 'z'", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE event_id = 3", NULL), 1);
    herald_stats s = stats_of(f);
    assert_int_equal(s.pending, 7);
}

/* ---- consent holds, metadata in the push, erasure ---- */

static void test_push_held_and_release(void **state)
{
    fx *f = *state;
    open_queue(f);
    char body[64];
    make_body(body, 40, 1);
    uint64_t ev = 0;
    assert_int_equal(herald_queue_push(f->q, 1000, "track", body, 40, TWO_DESTS, 2, 1, NULL, 0, &ev, NULL, NULL,
                                       f->err, sizeof f->err),
                     HERALD_OK);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE next_at = 9223372036854775807",
                            NULL),
                     2);
    /* Held rows are never due, not pending for flush, not a wake-up time. */
    herald_queue_row *rows = NULL;
    size_t n = 9;
    fetch(f, "a", INT64_MAX - 1, 10, &rows, &n);
    assert_int_equal(n, 0);
    herald_queue_rows_free(rows, n);
    int pending = -1;
    assert_int_equal(herald_queue_has_pending(f->q, "a", &pending), HERALD_OK);
    assert_int_equal(pending, 0);
    int64_t next = 0;
    assert_int_equal(herald_queue_next_due(f->q, "a", 0, &next), HERALD_OK);
    assert_int_equal(next, -1);
    uint64_t held = 0;
    assert_int_equal(herald_queue_held_count(f->q, &held), HERALD_OK);
    assert_int_equal(held, 2);
    herald_stats st = stats_of(f);
    assert_int_equal(st.held, 2);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.queued, 1);

    /* A second, unheld event is due at once. */
    push_n(f, 1000, 40, 2, ONE_DEST, 1);
    fetch(f, "a", 1000, 10, &rows, &n);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].event_id, 2);
    herald_queue_rows_free(rows, n);

    uint64_t released = 0;
    assert_int_equal(herald_queue_release_held(f->q, &released), HERALD_OK);
    assert_int_equal(released, 2);
    fetch(f, "a", 1000, 10, &rows, &n);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].event_id, 1);
    assert_int_equal(rows[1].event_id, 2);
    herald_queue_rows_free(rows, n);
    fetch(f, "b", 0, 10, &rows, &n);
    assert_int_equal(n, 1);
    herald_queue_rows_free(rows, n);
    assert_int_equal(herald_queue_has_pending(f->q, "b", &pending), HERALD_OK);
    assert_int_equal(pending, 1);
    assert_int_equal(herald_queue_held_count(f->q, &held), HERALD_OK);
    assert_int_equal(held, 0);
    assert_int_equal(herald_queue_release_held(f->q, &released), HERALD_OK);
    assert_int_equal(released, 0);
}

static void test_push_writes_metadata_atomically(void **state)
{
    fx *f = *state;
    f->cfg.max_events = 1;
    f->cfg.max_bytes = 1024;
    f->cfg.overflow_policy = HERALD_OVERFLOW_REJECT_NEW;
    open_queue(f);
    char body[64];
    make_body(body, 40, 1);
    uint64_t ev = 0;
    herald_meta_update meta[] = {{"user_id", "u-1"}, {"session", "1000 1000 1"}};
    assert_int_equal(herald_queue_push(f->q, 1000, "identify", body, 40, ONE_DEST, 1, 0, meta, 2,
                                       &ev, NULL, NULL, f->err, sizeof f->err),
                     HERALD_OK);
    char *v = NULL;
    assert_int_equal(herald_queue_meta_get(f->q, "user_id", &v), HERALD_OK);
    assert_string_equal(v, "u-1");
    free(v);
    assert_int_equal(herald_queue_meta_get(f->q, "session", &v), HERALD_OK);
    assert_string_equal(v, "1000 1000 1");
    free(v);

    /* A refused push (queue full) writes none of its metadata. */
    herald_meta_update other[] = {{"user_id", "u-2"}, {"session", NULL}};
    assert_int_equal(herald_queue_push(f->q, 1000, "identify", body, 40, ONE_DEST, 1, 0, other, 2,
                                       &ev, NULL, NULL, f->err, sizeof f->err),
                     HERALD_E_QUEUE_FULL);
    /* Nor does an event larger than the byte bound. */
    char big[2048];
    make_body(big, 1500, 3);
    assert_int_equal(herald_queue_push(f->q, 1000, "identify", big, 1500, ONE_DEST, 1, 0, other, 2,
                                       &ev, NULL, NULL, f->err, sizeof f->err),
                     HERALD_E_QUEUE_FULL);
    assert_int_equal(herald_queue_meta_get(f->q, "user_id", &v), HERALD_OK);
    assert_string_equal(v, "u-1");
    free(v);
    assert_int_equal(herald_queue_meta_get(f->q, "session", &v), HERALD_OK);
    assert_non_null(v);
    free(v);

    /* Room again: the update applies, NULL deleting. */
    int64_t one = 1;
    herald_settlement s = settlement(HERALD_SETTLE_ACK, &one, 1, 2000);
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);
    assert_int_equal(herald_queue_push(f->q, 1000, "identify", body, 40, ONE_DEST, 1, 0, other, 2,
                                       &ev, NULL, NULL, f->err, sizeof f->err),
                     HERALD_OK);
    assert_int_equal(herald_queue_meta_get(f->q, "user_id", &v), HERALD_OK);
    assert_string_equal(v, "u-2");
    free(v);
    assert_int_equal(herald_queue_meta_get(f->q, "session", &v), HERALD_OK);
    assert_null(v);
}


static void test_erase_ids(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_text(f, "{\"anonymousId\":\"anon-1\",\"userId\":\"u1\",\"n\":1}", TWO_DESTS, 2); /* 1 */
    push_text(f, "{\"anonymousId\":\"anon-1\",\"n\":2}", ONE_DEST, 1);                    /* 2 */
    push_text(f, "{\"anonymousId\":\"anon-2\",\"userId\":\"u1\",\"n\":3}", ONE_DEST, 1);  /* 3 */
    push_text(f, "{\"anonymousId\":\"anon-3\",\"userId\":\"u3\",\"n\":4}", ONE_DEST, 1);  /* 4 */
    push_text(f, "not json at all", ONE_DEST, 1);                                         /* 5 */
    push_text(f, "{\"anonymousId\":\"anon-1\",\"n\":6}", ONE_DEST, 1);                    /* 6 */
    push_text(f, "{\"anonymousId\":\"anon-9\",\"n\":7}", ONE_DEST, 1);                    /* 7 */
    int64_t six = 6, seven = 7;
    herald_settlement s = settlement(HERALD_SETTLE_DEAD, &six, 1, 2000);
    s.reason = "r";
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);
    s.event_ids = &seven;
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);
    assert_int_equal(count_rows(f, "dead_letters"), 2);
    int64_t bytes_kept = db_int(f->path, "SELECT sum(bytes) FROM events WHERE id IN (4, 5)", NULL);

    herald_meta_update meta[] = {{"anonymous_id", "fresh"}, {"user_id", NULL}};
    assert_int_equal(herald_queue_meta_set(f->q, "user_id", "u1"), HERALD_OK);
    uint64_t erased = 0;
    assert_int_equal(herald_queue_erase_ids(f->q, "anon-1", "u1", meta, 2, &erased), HERALD_OK);
    /* Events 1, 2, 3 and the dead letter of 6. */
    assert_int_equal(erased, 4);
    assert_int_equal(count_rows(f, "events"), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events WHERE id IN (4, 5)", NULL), 2);
    assert_int_equal(count_rows(f, "outbox"), 2);
    assert_int_equal(count_rows(f, "dead_letters"), 1);
    assert_int_equal(db_int(f->path, "SELECT event_id FROM dead_letters", NULL), 7);
    herald_stats st = stats_of(f);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.queued_bytes, bytes_kept);
    assert_int_equal(st.pending, 2);
    char *v = NULL;
    assert_int_equal(herald_queue_meta_get(f->q, "anonymous_id", &v), HERALD_OK);
    assert_string_equal(v, "fresh");
    free(v);
    assert_int_equal(herald_queue_meta_get(f->q, "user_id", &v), HERALD_OK);
    assert_null(v);

    /* Only one id given: only it matches. */
    assert_int_equal(herald_queue_erase_ids(f->q, NULL, "u3", NULL, 0, &erased), HERALD_OK);
    assert_int_equal(erased, 1);
    assert_int_equal(count_rows(f, "events"), 1);

    /* No ids: nothing is erased, the metadata still changes. */
    herald_meta_update again[] = {{"anonymous_id", "fresher"}};
    assert_int_equal(herald_queue_erase_ids(f->q, NULL, NULL, again, 1, &erased), HERALD_OK);
    assert_int_equal(erased, 0);
    assert_int_equal(count_rows(f, "events"), 1);
    assert_int_equal(count_rows(f, "dead_letters"), 1);
    assert_int_equal(herald_queue_meta_get(f->q, "anonymous_id", &v), HERALD_OK);
    assert_string_equal(v, "fresher");
    free(v);
    /* The queue still works afterwards. */
    push_n(f, 3000, 40, 8, ONE_DEST, 1);
    assert_int_equal(count_rows(f, "events"), 2);
}

/* ---- dead letters as JSON, replay ---- */

static void test_dead_letters_json(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    push_n(f, 1000, 40, 2, ONE_DEST, 1);
    int64_t ids[] = {1, 2};
    herald_settlement s = settlement(HERALD_SETTLE_DEAD, ids, 2, 1700000000123LL);
    s.http_status = 422;
    s.reason = "HTTP 422: invalid";
    s.response = "invalid";
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);

    char *text = NULL;
    assert_int_equal(herald_queue_dead_letters_json(f->q, 0, &text), HERALD_OK);
    assert_non_null(text);
    json_t *list = json_loads(text, 0, NULL);
    free(text);
    assert_true(json_is_array(list));
    assert_int_equal(json_array_size(list), 2);
    json_t *row = json_array_get(list, 0);
    assert_true(json_is_integer(json_object_get(row, "id")));
    assert_string_equal(json_string_value(json_object_get(row, "destination")), "a");
    assert_string_equal(json_string_value(json_object_get(row, "failed_at")),
                        "2023-11-14T22:13:20.123Z");
    assert_int_equal(json_integer_value(json_object_get(row, "http_status")), 422);
    assert_string_equal(json_string_value(json_object_get(row, "reason")), "HTTP 422: invalid");
    assert_string_equal(json_string_value(json_object_get(row, "response")), "invalid");
    json_t *event = json_object_get(row, "event");
    assert_true(json_is_object(event));
    assert_int_equal(json_integer_value(json_object_get(event, "n")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(json_array_get(list, 1),
                                                                        "event"),
                                                        "n")),
                     2);
    json_decref(list);

    assert_int_equal(herald_queue_dead_letters_json(f->q, 1, &text), HERALD_OK);
    list = json_loads(text, 0, NULL);
    free(text);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
}

static void test_replay(void **state)
{
    fx *f = *state;
    open_queue(f);
    push_n(f, 1000, 40, 1, ONE_DEST, 1);
    push_n(f, 1000, 50, 2, (const char *const[]){"x"}, 1);
    push_n(f, 1000, 60, 3, (const char *const[]){"b"}, 1);
    int64_t one = 1, two = 2, three = 3;
    herald_settlement s = settlement(HERALD_SETTLE_DEAD, &one, 1, 2000);
    s.reason = "r";
    assert_int_equal(herald_queue_settle(f->q, "a", &s, NULL, NULL), HERALD_OK);
    s.event_ids = &two;
    assert_int_equal(herald_queue_settle(f->q, "x", &s, NULL, NULL), HERALD_OK);
    s.event_ids = &three;
    assert_int_equal(herald_queue_settle(f->q, "b", &s, NULL, NULL), HERALD_OK);
    assert_int_equal(count_rows(f, "events"), 0);
    assert_int_equal(count_rows(f, "dead_letters"), 3);

    /* Only "b" asked for: a and x stay dead. */
    uint64_t replayed = 99;
    assert_int_equal(herald_queue_replay(f->q, "b", TWO_DESTS, 2, 5000, &replayed), HERALD_OK);
    assert_int_equal(replayed, 1);
    assert_int_equal(count_rows(f, "dead_letters"), 2);
    assert_db_text(f->path, "SELECT dest FROM outbox", "b");

    /* All known destinations: a comes back, x (unknown here) stays. */
    assert_int_equal(herald_queue_replay(f->q, NULL, TWO_DESTS, 2, 6000, &replayed), HERALD_OK);
    assert_int_equal(replayed, 1);
    assert_int_equal(count_rows(f, "dead_letters"), 1);
    assert_db_text(f->path, "SELECT dest FROM dead_letters", "x");
    assert_int_equal(count_rows(f, "events"), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events WHERE type = 'replay'", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT created_at FROM events e JOIN outbox o ON "
                                     "o.event_id = e.id WHERE o.dest = 'a'",
                            NULL),
                     6000);
    char expected[64];
    make_body(expected, 40, 1);
    char *body = db_text(f->path, "SELECT CAST(e.body AS TEXT) FROM events e JOIN outbox o ON "
                                  "o.event_id = e.id WHERE o.dest = 'a'");
    assert_non_null(body);
    assert_string_equal(body, expected);
    free(body);
    herald_stats st = stats_of(f);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.queued_bytes, 100);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.dead_letters, 1);

    herald_queue_row *rows = NULL;
    size_t n = 0;
    fetch(f, "a", 6000, 10, &rows, &n);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].body, expected);
    assert_int_equal(rows[0].attempts, 0);
    herald_queue_rows_free(rows, n);

    /* Nothing left for known destinations. */
    assert_int_equal(herald_queue_replay(f->q, NULL, TWO_DESTS, 2, 7000, &replayed), HERALD_OK);
    assert_int_equal(replayed, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_fresh_file_schema),
        T(test_file_created_private_despite_umask),
        T(test_migrates_empty_v0_file),
        T(test_migrates_v0_file_keeping_foreign_tables),
        T(test_zero_byte_file_is_migrated),
        T(test_migrates_v1_file_keeping_data),
        T(test_newer_schema_refused),
        T(test_garbage_file_moved_aside),
        T(test_reopen_keeps_data),
        T(test_counters_rebuilt_on_open),
        T(test_push_and_fetch),
        T(test_fetch_order_limit_and_next_at),
        T(test_reject_new_at_max_events),
        T(test_reject_new_at_max_bytes),
        T(test_drop_oldest_at_max_events),
        T(test_drop_oldest_at_max_bytes),
        T(test_event_larger_than_max_bytes),
        T(test_max_dead_letters_trims_oldest),
        T(test_max_dead_letters_zero_keeps_none),
        T(test_settle_ack_one_destination),
        T(test_settle_ack_two_destinations),
        T(test_settle_retry_schedules),
        T(test_settle_retry_gives_up_at_max_attempts),
        T(test_settle_retry_without_counting),
        T(test_settle_retry_expired),
        T(test_settle_dead),
        T(test_settle_dead_of_missing_event_counts_nothing),
        T(test_event_ids_not_reused_after_delete),
        T(test_meta),
        T(test_count_and_stats_struct_size),
        T(test_adopt_orphans),
        T(test_adopt_gives_every_destination_a_row),
        T(test_push_held_and_release),
        T(test_push_writes_metadata_atomically),
        T(test_erase_ids),
        T(test_dead_letters_json),
        T(test_replay),
    };
    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
