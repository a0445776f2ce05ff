#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "event.h"

/* Prepared statements, compiled once per queue. */
enum statement {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_COUNTER_GET,
    ST_COUNTER_ADD,
    ST_EVENT_INSERT,
    ST_OUTBOX_INSERT,
    ST_OLDEST_EVENT,
    ST_EVENT_OUTBOX_DESTS,
    ST_OUTBOX_DELETE_EVENT,
    ST_EVENT_DELETE,
    ST_EVENT_DELETE_ORPHAN,
    ST_DEAD_INSERT_BODY,
    ST_DEAD_INSERT_FROM_EVENT,
    ST_DEAD_TRIM,
    ST_FETCH,
    ST_OUTBOX_DELETE,
    ST_OUTBOX_GET,
    ST_OUTBOX_UPDATE,
    ST_HAS_PENDING,
    ST_NEXT_DUE,
    ST_META_GET,
    ST_META_SET,
    ST_META_DELETE,
    ST_COUNT
};

static const char *const statement_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_COUNTER_GET] = "SELECT value FROM counters WHERE name = ?1",
    [ST_COUNTER_ADD] = "INSERT INTO counters(name, value) VALUES(?1, ?2) "
                       "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    [ST_EVENT_INSERT] = "INSERT INTO events(created_at, type, bytes, body) VALUES(?1, ?2, ?3, ?4)",
    [ST_OUTBOX_INSERT] = "INSERT INTO outbox(dest, event_id, attempts, next_at) VALUES(?1, ?2, 0, ?3)",
    [ST_OLDEST_EVENT] = "SELECT id, bytes, body FROM events ORDER BY id LIMIT 1",
    [ST_EVENT_OUTBOX_DESTS] = "SELECT dest FROM outbox WHERE event_id = ?1",
    [ST_OUTBOX_DELETE_EVENT] = "DELETE FROM outbox WHERE event_id = ?1",
    [ST_EVENT_DELETE] = "DELETE FROM events WHERE id = ?1",
    [ST_EVENT_DELETE_ORPHAN] = "DELETE FROM events WHERE id = ?1 AND NOT EXISTS "
                               "(SELECT 1 FROM outbox WHERE event_id = ?1) RETURNING bytes",
    [ST_DEAD_INSERT_BODY] = "INSERT INTO dead_letters(event_id, dest, failed_at, http_status, "
                            "reason, response, body) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_DEAD_INSERT_FROM_EVENT] = "INSERT INTO dead_letters(event_id, dest, failed_at, http_status, "
                                  "reason, response, body) SELECT id, ?2, ?3, ?4, ?5, ?6, body "
                                  "FROM events WHERE id = ?1",
    [ST_DEAD_TRIM] = "DELETE FROM dead_letters WHERE id IN "
                     "(SELECT id FROM dead_letters ORDER BY id DESC LIMIT -1 OFFSET ?1)",
    [ST_FETCH] = "SELECT o.event_id, o.attempts, e.created_at, e.body FROM outbox o "
                 "JOIN events e ON e.id = o.event_id "
                 "WHERE o.dest = ?1 AND o.next_at <= ?2 ORDER BY o.event_id LIMIT ?3",
    [ST_OUTBOX_DELETE] = "DELETE FROM outbox WHERE dest = ?1 AND event_id = ?2",
    [ST_OUTBOX_GET] = "SELECT o.attempts, e.created_at FROM outbox o JOIN events e "
                      "ON e.id = o.event_id WHERE o.dest = ?1 AND o.event_id = ?2",
    [ST_OUTBOX_UPDATE] = "UPDATE outbox SET attempts = ?3, next_at = ?4 "
                         "WHERE dest = ?1 AND event_id = ?2",
    [ST_HAS_PENDING] = "SELECT EXISTS(SELECT 1 FROM outbox WHERE dest = ?1 AND next_at < ?2)",
    [ST_NEXT_DUE] = "SELECT min(next_at) FROM outbox WHERE dest = ?1 AND next_at > ?2 "
                    "AND next_at < ?3",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_META_DELETE] = "DELETE FROM meta WHERE key = ?1",
};

/* Numbered migrations: migrations[i] takes a file from version i to i + 1. */
static const char *const migrations[HERALD_QUEUE_SCHEMA_VERSION] = {
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
    " response TEXT, body BLOB NOT NULL);",
    /* 1 -> 2: event ids are never reused. Without AUTOINCREMENT, SQLite hands
     * out max(id) + 1, so deleting the newest event (evicted, erased) let the
     * next one take its id, and a late answer to a request for the old event
     * would settle the new one. */
    "CREATE TABLE events_v2(id INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL,"
    " type TEXT NOT NULL, bytes INTEGER NOT NULL, body BLOB NOT NULL);"
    "INSERT INTO events_v2(id, created_at, type, bytes, body)"
    " SELECT id, created_at, type, bytes, body FROM events;"
    "DROP TABLE events;"
    "ALTER TABLE events_v2 RENAME TO events;",
};

struct herald_queue {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    herald_queue_config config;
    const herald_logger *logger;
    pthread_mutex_t *writer; /* shared by this process's connections, or NULL */
    int writer_held;
};

const char *herald_queue_errmsg(herald_queue *q)
{
    return sqlite3_errmsg(q->db);
}

/* Reset a statement for reuse and bind nothing. */
static sqlite3_stmt *statement(herald_queue *q, enum statement id)
{
    sqlite3_stmt *s = q->stmt[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Run a statement that returns no rows. */
static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Write transactions. Connections of one process take turns on the shared
 * writer mutex first: SQLite's own busy handler would sleep a millisecond or
 * more each time the other connection holds the write lock. */
static void writer_release(herald_queue *q)
{
    if (q->writer_held) {
        q->writer_held = 0;
        pthread_mutex_unlock(q->writer);
    }
}

static int begin(herald_queue *q)
{
    if (q->writer) {
        pthread_mutex_lock(q->writer);
        q->writer_held = 1;
    }
    int rc = step_done(statement(q, ST_BEGIN));
    if (rc != SQLITE_OK)
        writer_release(q);
    return rc;
}

static int commit(herald_queue *q)
{
    int rc = step_done(statement(q, ST_COMMIT));
    if (rc == SQLITE_OK)
        writer_release(q);
    return rc; /* on failure the transaction stays open: the caller rolls back */
}

static void rollback(herald_queue *q)
{
    if (!sqlite3_get_autocommit(q->db))
        step_done(statement(q, ST_ROLLBACK));
    writer_release(q);
}

/* Commit a write transaction that went well so far (rc), or roll it back. */
static herald_status finish(herald_queue *q, int rc)
{
    if (rc == SQLITE_OK)
        rc = commit(q);
    if (rc != SQLITE_OK) {
        rollback(q);
        return HERALD_E_STORAGE;
    }
    return HERALD_OK;
}

static int counter_add(herald_queue *q, const char *name, int64_t delta)
{
    if (delta == 0)
        return SQLITE_OK;
    sqlite3_stmt *s = statement(q, ST_COUNTER_ADD);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, delta);
    return step_done(s);
}

static int64_t counter_get(herald_queue *q, const char *name)
{
    sqlite3_stmt *s = statement(q, ST_COUNTER_GET);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int64_t value = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return value;
}

static herald_status storage_error(herald_queue *q, int rc, char *err, size_t errlen,
                                   const char *what)
{
    herald_error_format(err, errlen, "%s: %s (%s)", what, sqlite3_errmsg(q->db),
                        sqlite3_errstr(rc));
    rollback(q);
    return HERALD_E_STORAGE;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    int rc = exec(db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_stmt *s = NULL;
    int version = 0;
    rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_OK)
        goto fail;
    if (version > HERALD_QUEUE_SCHEMA_VERSION) {
        herald_error_format(err, errlen,
                            "queue file has schema version %d, newer than this library's %d",
                            version, HERALD_QUEUE_SCHEMA_VERSION);
        exec(db, "ROLLBACK");
        return SQLITE_MISMATCH;
    }
    for (int v = version; v < HERALD_QUEUE_SCHEMA_VERSION; v++) {
        if ((rc = exec(db, migrations[v])) != SQLITE_OK)
            goto fail;
    }
    if (version != HERALD_QUEUE_SCHEMA_VERSION) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", HERALD_QUEUE_SCHEMA_VERSION);
        if ((rc = exec(db, pragma)) != SQLITE_OK)
            goto fail;
    }
    /* Keep counters in step with the tables: a file written by a process that
     * was killed mid-way is consistent (transactions), but a file from an
     * older herald may not have the counter rows yet. */
    if ((rc = exec(db, "DELETE FROM outbox WHERE event_id NOT IN (SELECT id FROM events);"
                       "INSERT INTO counters(name, value) SELECT 'queue_events', count(*) FROM events "
                       " WHERE true ON CONFLICT(name) DO UPDATE SET value = excluded.value;"
                       "INSERT INTO counters(name, value) SELECT 'queue_bytes', total(bytes) FROM events"
                       " WHERE true ON CONFLICT(name) DO UPDATE SET value = excluded.value;")) !=
        SQLITE_OK)
        goto fail;
    return exec(db, "COMMIT");
fail:
    herald_error_format(err, errlen, "migrating the queue schema: %s", sqlite3_errmsg(db));
    exec(db, "ROLLBACK");
    return rc;
}

/* Create the file ourselves so that it is private (0600) from the start;
 * SQLite gives its -wal and -shm files the same mode. An existing file is
 * not opened here: closing any descriptor of it would drop every POSIX lock
 * this process holds on it, and another connection of this process (a
 * second client, the ingest thread's) relies on those locks. Without them
 * another process may reset the WAL under it, and its commits vanish. */
static int create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        struct stat st;
        if (errno != EEXIST || stat(path, &st) != 0)
            return -1;
        if (S_ISDIR(st.st_mode)) {
            errno = EISDIR; /* say so, rather than SQLite's "unable to open" */
            return -1;
        }
        return 0;
    }
    close(fd);
    return 0;
}

static int open_db(herald_queue *q, const char *path, char *err, size_t errlen)
{
    if (create_private(path) != 0) {
        herald_error_format(err, errlen, "cannot create queue file %s: %s", path, strerror(errno));
        return SQLITE_CANTOPEN;
    }
    int rc = sqlite3_open_v2(path, &q->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        herald_error_format(err, errlen, "cannot open queue file %s: %s", path,
                            q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        return rc;
    }
    sqlite3_extended_result_codes(q->db, 0);
    sqlite3_busy_timeout(q->db, 5000);
    const char *sync = q->config.durability == HERALD_DURABILITY_POWER
                           ? "PRAGMA synchronous = FULL"
                           : "PRAGMA synchronous = NORMAL";
    sqlite3_stmt *s = NULL;
    rc = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        rc = rc == SQLITE_ROW ? SQLITE_OK : rc;
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_OK)
        rc = exec(q->db, sync);
    if (rc == SQLITE_OK)
        rc = migrate(q->db, err, errlen);
    else
        herald_error_format(err, errlen, "cannot use queue file %s: %s", path,
                            sqlite3_errmsg(q->db));
    if (rc == SQLITE_OK) {
        for (int i = 0; i < ST_COUNT && rc == SQLITE_OK; i++)
            rc = sqlite3_prepare_v3(q->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &q->stmt[i], NULL);
        if (rc != SQLITE_OK)
            herald_error_format(err, errlen, "preparing queue statements: %s",
                                sqlite3_errmsg(q->db));
    }
    return rc;
}

static void close_db(herald_queue *q)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(q->stmt[i]);
        q->stmt[i] = NULL;
    }
    sqlite3_close(q->db);
    q->db = NULL;
}

static int move_aside(const char *path, char *moved, size_t movedlen)
{
    /* Never overwrite an earlier corrupt file moved aside in the same second. */
    snprintf(moved, movedlen, "%s.corrupt-%lld", path, (long long)time(NULL));
    for (int n = 2; access(moved, F_OK) == 0 && n < 1000; n++)
        snprintf(moved, movedlen, "%s.corrupt-%lld-%d", path, (long long)time(NULL), n);
    if (rename(path, moved) != 0)
        return -1;
    const char *suffixes[] = {"-wal", "-shm"};
    for (size_t i = 0; i < 2; i++) {
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s%s", path, suffixes[i]);
        snprintf(to, sizeof to, "%s%s", moved, suffixes[i]);
        if (rename(from, to) != 0 && errno != ENOENT)
            unlink(from);
    }
    return 0;
}

herald_status herald_queue_open(herald_queue **out, const herald_queue_config *config, char *err,
                                size_t errlen)
{
    *out = NULL;
    herald_queue *q = calloc(1, sizeof *q);
    if (q == NULL)
        return HERALD_E_NO_MEMORY;
    q->config = *config;
    q->logger = config->logger;
    int rc = open_db(q, config->path, err, errlen);
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) {
        close_db(q);
        char moved[4096];
        if (move_aside(config->path, moved, sizeof moved) != 0) {
            herald_error_format(err, errlen, "queue file %s is corrupt and cannot be moved: %s",
                                config->path, strerror(errno));
            free(q);
            return HERALD_E_STORAGE;
        }
        herald_log(q->logger, HERALD_LOG_WARN,
                   "queue file %s was corrupt; moved to %s and started a fresh queue",
                   config->path, moved);
        rc = open_db(q, config->path, err, errlen);
    }
    if (rc != SQLITE_OK) {
        close_db(q);
        free(q);
        return HERALD_E_STORAGE;
    }
    *out = q;
    return HERALD_OK;
}

void herald_queue_share_writer(herald_queue *q, pthread_mutex_t *writer)
{
    q->writer = writer;
}

void herald_queue_set_cache_kib(herald_queue *q, unsigned kib)
{
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size = -%u", kib);
    exec(q->db, pragma);
}

void herald_queue_forget(herald_queue *q)
{
    /* The sqlite3 handle and its statements are left as they are: memory
     * only, never used again in this process. */
    free(q);
}

void herald_queue_close(herald_queue *q)
{
    if (q == NULL)
        return;
    close_db(q);
    free(q);
}

herald_status herald_queue_meta_get(herald_queue *q, const char *key, char **value)
{
    *value = NULL;
    sqlite3_stmt *s = statement(q, ST_META_GET);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    herald_status st = HERALD_OK;
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
        *value = strdup((const char *)sqlite3_column_text(s, 0));
        if (*value == NULL)
            st = HERALD_E_NO_MEMORY;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        st = HERALD_E_STORAGE;
    }
    sqlite3_reset(s);
    return st;
}

herald_status herald_queue_meta_set(herald_queue *q, const char *key, const char *value)
{
    sqlite3_stmt *s = statement(q, value ? ST_META_SET : ST_META_DELETE);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (value)
        sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
    return step_done(s) == SQLITE_OK ? HERALD_OK : HERALD_E_STORAGE;
}

herald_status herald_queue_count(herald_queue *q, const char *counter, int64_t delta)
{
    return counter_add(q, counter, delta) == SQLITE_OK ? HERALD_OK : HERALD_E_STORAGE;
}

herald_status herald_queue_count_many(herald_queue *q, const char *const *counters,
                                      const int64_t *deltas, size_t count)
{
    int rc = begin(q);
    for (size_t i = 0; rc == SQLITE_OK && i < count; i++)
        rc = counter_add(q, counters[i], deltas[i]);
    return finish(q, rc);
}

herald_status herald_queue_counters_with_prefix(herald_queue *q, const char *prefix,
                                                json_t *object)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(q->db,
                           "SELECT name, value FROM counters WHERE substr(name, 1, length(?1)) = ?1 "
                           "ORDER BY name",
                           -1, &s, NULL) != SQLITE_OK)
        return HERALD_E_STORAGE;
    sqlite3_bind_text(s, 1, prefix, -1, SQLITE_STATIC);
    size_t skip = strlen(prefix);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        json_object_set_new(object, name + skip, json_integer(sqlite3_column_int64(s, 1)));
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? HERALD_OK : HERALD_E_STORAGE;
}

/* Delete an event that no destination holds any more; keeps the queue
 * counters in step. */
/* Within a settle: the queue counters' change, applied once at its end. */
typedef struct queue_delta {
    int64_t events;
    int64_t bytes;
} queue_delta;

static int delete_if_orphan(herald_queue *q, int64_t event_id, queue_delta *delta)
{
    sqlite3_stmt *s = statement(q, ST_EVENT_DELETE_ORPHAN);
    sqlite3_bind_int64(s, 1, event_id);
    int rc = sqlite3_step(s);
    int64_t bytes = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rc;
    if (bytes < 0)
        return SQLITE_OK;
    delta->events--;
    delta->bytes -= bytes;
    return SQLITE_OK;
}

static int trim_dead_letters(herald_queue *q)
{
    sqlite3_stmt *s = statement(q, ST_DEAD_TRIM);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)q->config.max_dead_letters);
    return step_done(s);
}

/* Evict the oldest event: one dead letter per destination still holding it. */
static int evict_oldest(herald_queue *q, int64_t now_ms, int64_t *freed_bytes)
{
    sqlite3_stmt *oldest = statement(q, ST_OLDEST_EVENT);
    int rc = sqlite3_step(oldest);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(oldest);
        return rc == SQLITE_DONE ? SQLITE_NOTFOUND : rc;
    }
    int64_t id = sqlite3_column_int64(oldest, 0);
    int64_t bytes = sqlite3_column_int64(oldest, 1);
    sqlite3_reset(oldest);

    sqlite3_stmt *dests = statement(q, ST_EVENT_OUTBOX_DESTS);
    sqlite3_bind_int64(dests, 1, id);
    int64_t dead = 0;
    while ((rc = sqlite3_step(dests)) == SQLITE_ROW) {
        sqlite3_stmt *ins = statement(q, ST_DEAD_INSERT_FROM_EVENT);
        sqlite3_bind_int64(ins, 1, id);
        sqlite3_bind_text(ins, 2, (const char *)sqlite3_column_text(dests, 0), -1,
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 3, now_ms);
        sqlite3_bind_int(ins, 4, 0);
        sqlite3_bind_text(ins, 5, "evicted", -1, SQLITE_STATIC);
        sqlite3_bind_null(ins, 6);
        int irc = step_done(ins);
        if (irc != SQLITE_OK) {
            sqlite3_reset(dests);
            return irc;
        }
        dead++;
    }
    sqlite3_reset(dests);
    if (rc != SQLITE_DONE)
        return rc;
    sqlite3_stmt *del = statement(q, ST_OUTBOX_DELETE_EVENT);
    sqlite3_bind_int64(del, 1, id);
    if ((rc = step_done(del)) != SQLITE_OK)
        return rc;
    del = statement(q, ST_EVENT_DELETE);
    sqlite3_bind_int64(del, 1, id);
    if ((rc = step_done(del)) != SQLITE_OK || (rc = counter_add(q, "queue_events", -1)) ||
        (rc = counter_add(q, "queue_bytes", -bytes)) || (rc = counter_add(q, "evicted", 1)) ||
        (rc = counter_add(q, "dead", dead)))
        return rc;
    *freed_bytes = bytes;
    return SQLITE_OK;
}

static int meta_write(herald_queue *q, const herald_meta_update *meta, size_t meta_count)
{
    for (size_t i = 0; i < meta_count; i++) {
        sqlite3_stmt *s = statement(q, meta[i].value ? ST_META_SET : ST_META_DELETE);
        sqlite3_bind_text(s, 1, meta[i].key, -1, SQLITE_STATIC);
        if (meta[i].value)
            sqlite3_bind_text(s, 2, meta[i].value, -1, SQLITE_STATIC);
        int rc = step_done(s);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* Insert one event and its outbox rows inside the caller's transaction,
 * making room first. *events and *bytes track the bounds' counters. */
static herald_status push_one(herald_queue *q, const herald_queue_item *item, int force,
                              int64_t *events, int64_t *bytes, int64_t *id_out, uint64_t *evicted,
                              char *err, size_t errlen)
{
    int rc;
    while ((uint64_t)*events + 1 > q->config.max_events ||
           (uint64_t)*bytes + item->length > q->config.max_bytes) {
        if (q->config.overflow_policy == HERALD_OVERFLOW_REJECT_NEW && !force) {
            rollback(q);
            herald_error_format(err, errlen,
                                "queue is full (%" PRId64 " events, %" PRId64
                                " bytes) and overflow_policy is reject_new",
                                *events, *bytes);
            return HERALD_E_QUEUE_FULL;
        }
        if (q->config.overflow_policy == HERALD_OVERFLOW_REJECT_NEW)
            break; /* accepted already (staged): stored over the bound */
        int64_t freed = 0;
        rc = evict_oldest(q, item->created_ms, &freed);
        if (rc == SQLITE_NOTFOUND)
            break; /* counters were off; nothing left to evict */
        if (rc != SQLITE_OK)
            return storage_error(q, rc, err, errlen, "evicting the oldest event");
        (*events)--;
        *bytes -= freed;
        (*evicted)++;
    }
    sqlite3_stmt *s = statement(q, ST_EVENT_INSERT);
    sqlite3_bind_int64(s, 1, item->created_ms);
    sqlite3_bind_text(s, 2, item->type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)item->length);
    sqlite3_bind_blob(s, 4, item->body, (int)item->length, SQLITE_STATIC);
    if ((rc = step_done(s)) != SQLITE_OK)
        return storage_error(q, rc, err, errlen, "storing the event");
    int64_t id = sqlite3_last_insert_rowid(q->db);
    *id_out = id;
    for (size_t i = 0; i < item->destination_count; i++) {
        int fast = i < 64 && (item->fast_mask >> i & 1u);
        s = statement(q, ST_OUTBOX_INSERT);
        sqlite3_bind_text(s, 1, item->destinations[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, id);
        sqlite3_bind_int64(s, 3, item->held ? HERALD_QUEUE_HELD : fast ? HERALD_QUEUE_FAST : 0);
        if ((rc = step_done(s)) != SQLITE_OK)
            return storage_error(q, rc, err, errlen, "storing the event");
    }
    (*events)++;
    *bytes += (int64_t)item->length;
    return HERALD_OK;
}

herald_status herald_queue_push_many(herald_queue *q, const herald_queue_item *items, size_t count,
                                     int force, const herald_meta_update *meta,
                                     size_t meta_count, const char *const *counters,
                                     const int64_t *deltas, size_t counter_count,
                                     int64_t *ids, uint64_t *evicted, int64_t *queued_events,
                                     int64_t *queued_bytes, char *err, size_t errlen)
{
    *evicted = 0;
    for (size_t i = 0; i < count; i++) {
        if (items[i].length > q->config.max_bytes && !force) {
            herald_error_format(err, errlen, "event of %zu bytes is larger than max_queue_bytes",
                                items[i].length);
            return HERALD_E_QUEUE_FULL;
        }
    }
    int rc = begin(q);
    if (rc != SQLITE_OK)
        return storage_error(q, rc, err, errlen, "starting a transaction");
    int64_t events = counter_get(q, "queue_events");
    int64_t bytes = counter_get(q, "queue_bytes");
    int any_fast = 0;
    for (size_t i = 0; i < count; i++) {
        int64_t id = 0;
        herald_status st = push_one(q, &items[i], force, &events, &bytes, &id, evicted, err, errlen);
        if (st != HERALD_OK)
            return st;
        if (ids)
            ids[i] = id;
        any_fast |= items[i].fast_mask != 0 && !items[i].held;
    }
    static const herald_meta_update fast_rows = {"fast_rows", "1"};
    if (any_fast && (rc = meta_write(q, &fast_rows, 1)) != SQLITE_OK)
        return storage_error(q, rc, err, errlen, "committing the event");
    /* Evictions already moved the counters down; add what was inserted. */
    int64_t added_events = (int64_t)count, added_bytes = 0;
    for (size_t i = 0; i < count; i++)
        added_bytes += (int64_t)items[i].length;
    if ((rc = meta_write(q, meta, meta_count)) ||
        (rc = counter_add(q, "queue_events", added_events)) ||
        (rc = counter_add(q, "queue_bytes", added_bytes)) ||
        (rc = counter_add(q, "accepted", (int64_t)count)))
        return storage_error(q, rc, err, errlen, "committing the event");
    for (size_t i = 0; i < counter_count; i++)
        if ((rc = counter_add(q, counters[i], deltas[i])) != SQLITE_OK)
            return storage_error(q, rc, err, errlen, "committing the event");
    if ((*evicted && (rc = trim_dead_letters(q))) || (rc = commit(q)))
        return storage_error(q, rc, err, errlen, "committing the event");
    if (queued_events)
        *queued_events = events;
    if (queued_bytes)
        *queued_bytes = bytes;
    return HERALD_OK;
}

herald_status herald_queue_push(herald_queue *q, int64_t now_ms, const char *type,
                                const char *body, size_t length, const char *const *destinations,
                                size_t destination_count, int held,
                                const herald_meta_update *meta, size_t meta_count,
                                uint64_t *evicted, int64_t *queued_events, int64_t *queued_bytes,
                                char *err, size_t errlen)
{
    herald_queue_item item = {
        .created_ms = now_ms, .type = type, .body = body, .length = length,
        .destinations = destinations, .destination_count = destination_count, .held = held,
    };
    return herald_queue_push_many(q, &item, 1, 0, meta, meta_count, NULL, NULL, 0, NULL, evicted,
                                  queued_events, queued_bytes, err, errlen);
}

herald_status herald_queue_adopt(herald_queue *q, const char *const *destinations,
                                 size_t destination_count)
{
    if (destination_count == 0)
        return HERALD_OK;
    /* One statement for all destinations: SQLite materialises the SELECT
     * before inserting, so "held by no destination" is judged once, before
     * any of the new rows exist. */
    size_t sql_len = 256 + destination_count * 8;
    char *sql = malloc(sql_len);
    if (sql == NULL)
        return HERALD_E_NO_MEMORY;
    size_t n = (size_t)snprintf(sql, sql_len,
                                "INSERT OR IGNORE INTO outbox(dest, event_id) SELECT d.column1, e.id "
                                "FROM events e, (VALUES ");
    for (size_t i = 0; i < destination_count; i++)
        n += (size_t)snprintf(sql + n, sql_len - n, "%s(?)", i ? "," : "");
    snprintf(sql + n, sql_len - n,
             ") d WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.id)");
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(q->db, sql, -1, &s, NULL);
    free(sql);
    for (size_t i = 0; rc == SQLITE_OK && i < destination_count; i++)
        rc = sqlite3_bind_text(s, (int)i + 1, destinations[i], -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(q->db);
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? HERALD_OK : HERALD_E_STORAGE;
}

void herald_queue_rows_free(herald_queue_row *rows, size_t count)
{
    if (rows == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free(rows[i].body);
    free(rows);
}

herald_status herald_queue_fetch(herald_queue *q, const char *destination, int64_t now_ms,
                                 size_t limit, herald_queue_row **rows, size_t *count)
{
    *rows = NULL;
    *count = 0;
    if (limit == 0)
        return HERALD_OK;
    herald_queue_row *out = calloc(limit, sizeof *out);
    if (out == NULL)
        return HERALD_E_NO_MEMORY;
    sqlite3_stmt *s = statement(q, ST_FETCH);
    sqlite3_bind_text(s, 1, destination, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)limit);
    size_t n = 0;
    int rc;
    while (n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        herald_queue_row *row = &out[n];
        row->event_id = sqlite3_column_int64(s, 0);
        row->attempts = (uint32_t)sqlite3_column_int(s, 1);
        row->created_at = sqlite3_column_int64(s, 2);
        const void *body = sqlite3_column_blob(s, 3);
        row->length = (size_t)sqlite3_column_bytes(s, 3);
        row->body = malloc(row->length + 1);
        if (row->body == NULL) {
            sqlite3_reset(s);
            herald_queue_rows_free(out, n);
            return HERALD_E_NO_MEMORY;
        }
        if (row->length)
            memcpy(row->body, body, row->length);
        row->body[row->length] = '\0';
        n++;
    }
    if (n < limit && rc != SQLITE_DONE) {
        sqlite3_reset(s);
        herald_queue_rows_free(out, n);
        return HERALD_E_STORAGE;
    }
    sqlite3_reset(s);
    *rows = out;
    *count = n;
    return HERALD_OK;
}

/* Move one (destination, event) to the dead letters. *moved is 1 if the
 * destination still held the event, 0 if it was settled or evicted before. */
static int dead_letter(herald_queue *q, const char *destination, int64_t event_id,
                       const herald_settlement *st, const char *reason, int *moved,
                       queue_delta *delta)
{
    *moved = 0;
    sqlite3_stmt *s = statement(q, ST_OUTBOX_DELETE);
    sqlite3_bind_text(s, 1, destination, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, event_id);
    int rc = step_done(s);
    if (rc != SQLITE_OK || sqlite3_changes(q->db) == 0)
        return rc;
    s = statement(q, ST_DEAD_INSERT_FROM_EVENT);
    sqlite3_bind_int64(s, 1, event_id);
    sqlite3_bind_text(s, 2, destination, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, st->now_ms);
    sqlite3_bind_int64(s, 4, st->http_status);
    sqlite3_bind_text(s, 5, reason, -1, SQLITE_TRANSIENT);
    if (st->response)
        sqlite3_bind_text(s, 6, st->response, -1, SQLITE_STATIC);
    if ((rc = step_done(s)) != SQLITE_OK)
        return rc;
    *moved = sqlite3_changes(q->db) > 0;
    return delete_if_orphan(q, event_id, delta);
}

herald_status herald_queue_settle(herald_queue *q, const char *destination,
                                  const herald_settlement *st, uint64_t *sent_out,
                                  uint64_t *dead_out)
{
    uint64_t sent = 0, dead = 0, rescheduled = 0, skipped = 0;
    queue_delta delta = {0, 0};
    int rc = begin(q);
    const char *reason = st->reason ? st->reason : "";
    for (size_t i = 0; rc == SQLITE_OK && i < st->count; i++) {
        int64_t id = st->event_ids[i];
        if (st->kind == HERALD_SETTLE_ACK || st->kind == HERALD_SETTLE_SKIP) {
            sqlite3_stmt *s = statement(q, ST_OUTBOX_DELETE);
            sqlite3_bind_text(s, 1, destination, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, id);
            rc = step_done(s);
            if (rc == SQLITE_OK && sqlite3_changes(q->db) > 0) {
                if (st->kind == HERALD_SETTLE_ACK)
                    sent++;
                else
                    skipped++;
                rc = delete_if_orphan(q, id, &delta);
            }
        } else if (st->kind == HERALD_SETTLE_DEAD) {
            int moved = 0;
            rc = dead_letter(q, destination, id, st, reason, &moved, &delta);
            dead += (uint64_t)moved;
        } else {
            sqlite3_stmt *s = statement(q, ST_OUTBOX_GET);
            sqlite3_bind_text(s, 1, destination, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, id);
            if (sqlite3_step(s) != SQLITE_ROW) {
                sqlite3_reset(s);
                continue; /* settled elsewhere (another process) */
            }
            uint32_t attempts = (uint32_t)sqlite3_column_int(s, 0) + (st->count_attempt ? 1u : 0u);
            int64_t created_at = sqlite3_column_int64(s, 1);
            sqlite3_reset(s);
            if ((st->count_attempt && attempts >= st->max_attempts) ||
                created_at < st->expire_before_ms) {
                char why[512];
                snprintf(why, sizeof why, "%s after %u attempts: %s",
                         st->count_attempt && attempts >= st->max_attempts ? "gave up" : "expired",
                         attempts, reason);
                int moved = 0;
                rc = dead_letter(q, destination, id, st, why, &moved, &delta);
                dead += (uint64_t)moved;
            } else {
                s = statement(q, ST_OUTBOX_UPDATE);
                sqlite3_bind_text(s, 1, destination, -1, SQLITE_STATIC);
                sqlite3_bind_int64(s, 2, id);
                sqlite3_bind_int64(s, 3, attempts);
                sqlite3_bind_int64(s, 4, st->next_at_ms);
                rc = step_done(s);
                rescheduled++;
            }
        }
    }
    if (rc == SQLITE_OK)
        rc = counter_add(q, "queue_events", delta.events);
    if (rc == SQLITE_OK)
        rc = counter_add(q, "queue_bytes", delta.bytes);
    if (rc == SQLITE_OK)
        rc = counter_add(q, "sent", (int64_t)sent);
    if (rc == SQLITE_OK)
        rc = counter_add(q, "dead", (int64_t)dead);
    if (rc == SQLITE_OK)
        rc = counter_add(q, "requests", (int64_t)st->requests);
    if (rc == SQLITE_OK)
        rc = counter_add(q, "bytes_raw", (int64_t)st->bytes_raw);
    if (rc == SQLITE_OK)
        rc = counter_add(q, "bytes_sent", (int64_t)st->bytes_sent);
    /* A failed request counts as retried only if something was scheduled
     * again; one whose rows all went to dead letters was not. */
    if (rc == SQLITE_OK && (rescheduled > 0 || st->count == 0))
        rc = counter_add(q, "retried", (int64_t)st->retried);
    if (rc == SQLITE_OK)
        rc = counter_add(q, "server_dropped", (int64_t)st->dropped);
    if (rc == SQLITE_OK)
        rc = counter_add(q, "skipped", (int64_t)skipped);
    if (rc == SQLITE_OK && dead > 0)
        rc = trim_dead_letters(q);
    if (rc == SQLITE_OK)
        rc = commit(q);
    if (rc != SQLITE_OK) {
        herald_log(q->logger, HERALD_LOG_ERROR, "recording a delivery outcome for %s: %s",
                   destination, sqlite3_errmsg(q->db));
        rollback(q);
        return HERALD_E_STORAGE;
    }
    if (sent_out)
        *sent_out = sent;
    if (dead_out)
        *dead_out = dead;
    return HERALD_OK;
}

/* Make HERALD_QUEUE_FAST rows due now: the destination's rows of these
 * events, or, with no destination, every one (and forget that any exist). */
static herald_status make_fast_due(herald_queue *q, const char *destination,
                                   const int64_t *event_ids, size_t count)
{
    int rc = begin(q);
    sqlite3_stmt *s = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(q->db,
                                destination ? "UPDATE outbox SET next_at = 0 WHERE next_at = ?1 "
                                              "AND dest = ?2 AND event_id = ?3"
                                            : "UPDATE outbox SET next_at = 0 WHERE next_at = ?1",
                                -1, &s, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < (destination ? count : 1); i++) {
        sqlite3_bind_int64(s, 1, HERALD_QUEUE_FAST);
        if (destination) {
            sqlite3_bind_text(s, 2, destination, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 3, event_ids[i]);
        }
        rc = step_done(s);
    }
    sqlite3_finalize(s);
    static const herald_meta_update clear = {"fast_rows", NULL};
    if (rc == SQLITE_OK && destination == NULL)
        rc = meta_write(q, &clear, 1);
    return finish(q, rc);
}

herald_status herald_queue_unmark_fast(herald_queue *q, const char *destination,
                                       const int64_t *event_ids, size_t count)
{
    return make_fast_due(q, destination, event_ids, count);
}

herald_status herald_queue_release_fast(herald_queue *q)
{
    char *flag = NULL;
    if (herald_queue_meta_get(q, "fast_rows", &flag) != HERALD_OK)
        return HERALD_E_STORAGE;
    if (flag == NULL)
        return HERALD_OK;
    free(flag);
    return make_fast_due(q, NULL, NULL, 0);
}

herald_status herald_queue_has_pending(herald_queue *q, const char *destination, int *pending)
{
    sqlite3_stmt *s = statement(q, ST_HAS_PENDING);
    sqlite3_bind_text(s, 1, destination, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, HERALD_QUEUE_HELD);
    int rc = sqlite3_step(s);
    *pending = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? HERALD_OK : HERALD_E_STORAGE;
}

herald_status herald_queue_next_due(herald_queue *q, const char *destination, int64_t now_ms,
                                    int64_t *next_at)
{
    sqlite3_stmt *s = statement(q, ST_NEXT_DUE);
    sqlite3_bind_text(s, 1, destination, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    sqlite3_bind_int64(s, 3, HERALD_QUEUE_HELD);
    int rc = sqlite3_step(s);
    *next_at = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL
                   ? sqlite3_column_int64(s, 0)
                   : -1;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? HERALD_OK : HERALD_E_STORAGE;
}

static int64_t scalar(herald_queue *q, const char *sql, const char *text_arg, int *ok)
{
    sqlite3_stmt *s = NULL;
    int64_t value = 0;
    if (sqlite3_prepare_v2(q->db, sql, -1, &s, NULL) != SQLITE_OK) {
        *ok = 0;
        return 0;
    }
    if (text_arg)
        sqlite3_bind_text(s, 1, text_arg, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        value = sqlite3_column_int64(s, 0);
    else
        *ok = 0;
    sqlite3_finalize(s);
    return value;
}

herald_status herald_queue_pending_count(herald_queue *q, const char *destination,
                                         uint64_t *count)
{
    int ok = 1;
    *count = (uint64_t)scalar(q, "SELECT count(*) FROM outbox WHERE dest = ?1", destination, &ok);
    return ok ? HERALD_OK : HERALD_E_STORAGE;
}

herald_status herald_queue_stats(herald_queue *q, herald_stats *out)
{
    uint32_t size = out->struct_size;
    herald_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = size;
    int ok = 1;
    if (exec(q->db, "BEGIN") != SQLITE_OK)
        return HERALD_E_STORAGE;
    s.queued = (uint64_t)counter_get(q, "queue_events");
    s.queued_bytes = (uint64_t)counter_get(q, "queue_bytes");
    s.pending = (uint64_t)scalar(q, "SELECT count(*) FROM outbox", NULL, &ok);
    s.accepted = (uint64_t)counter_get(q, "accepted");
    s.rejected = (uint64_t)counter_get(q, "rejected");
    s.sent = (uint64_t)counter_get(q, "sent");
    s.retried = (uint64_t)counter_get(q, "retried");
    s.dead = (uint64_t)counter_get(q, "dead");
    s.evicted = (uint64_t)counter_get(q, "evicted");
    s.dead_letters = (uint64_t)scalar(q, "SELECT count(*) FROM dead_letters", NULL, &ok);
    s.requests = (uint64_t)counter_get(q, "requests");
    s.bytes_raw = (uint64_t)counter_get(q, "bytes_raw");
    s.bytes_sent = (uint64_t)counter_get(q, "bytes_sent");
    s.consent_dropped = (uint64_t)counter_get(q, "consent_dropped");
    s.server_dropped = (uint64_t)counter_get(q, "server_dropped");
    s.skipped = (uint64_t)counter_get(q, "skipped");
    {
        sqlite3_stmt *h = NULL;
        if (sqlite3_prepare_v2(q->db, "SELECT count(*) FROM outbox WHERE next_at = ?1", -1, &h,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_int64(h, 1, HERALD_QUEUE_HELD);
            if (sqlite3_step(h) == SQLITE_ROW)
                s.held = (uint64_t)sqlite3_column_int64(h, 0);
            else
                ok = 0;
        } else {
            ok = 0;
        }
        sqlite3_finalize(h);
    }
    exec(q->db, "COMMIT");
    if (!ok)
        return HERALD_E_STORAGE;
    memcpy(out, &s, size < sizeof s ? size : sizeof s);
    return HERALD_OK;
}

herald_status herald_queue_dead_letters_json(herald_queue *q, uint64_t limit, char **out)
{
    *out = NULL;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(q->db,
                           "SELECT id, dest, failed_at, http_status, reason, response, body "
                           "FROM dead_letters ORDER BY id LIMIT ?1",
                           -1, &s, NULL) != SQLITE_OK)
        return HERALD_E_STORAGE;
    sqlite3_bind_int64(s, 1, limit == 0 ? -1 : (sqlite3_int64)limit);
    json_t *list = json_array();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char when[25];
        herald_format_timestamp(sqlite3_column_int64(s, 2), when);
        json_t *event = json_loadb((const char *)sqlite3_column_blob(s, 6),
                                   (size_t)sqlite3_column_bytes(s, 6), 0, NULL);
        const unsigned char *response = sqlite3_column_text(s, 5);
        json_t *row = json_pack("{s:I,s:s,s:s,s:I,s:s,s:s?,s:o?}", "id",
                                (json_int_t)sqlite3_column_int64(s, 0), "destination",
                                (const char *)sqlite3_column_text(s, 1), "failed_at", when,
                                "http_status", (json_int_t)sqlite3_column_int64(s, 3), "reason",
                                (const char *)sqlite3_column_text(s, 4), "response",
                                (const char *)response, "event", event);
        if (row == NULL || json_array_append_new(list, row) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        json_decref(list);
        return rc == SQLITE_NOMEM ? HERALD_E_NO_MEMORY : HERALD_E_STORAGE;
    }
    *out = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    return *out ? HERALD_OK : HERALD_E_NO_MEMORY;
}

herald_status herald_queue_replay(herald_queue *q, const char *destination,
                                  const char *const *destinations, size_t destination_count,
                                  int64_t now_ms, uint64_t *replayed)
{
    *replayed = 0;
    int rc = begin(q);
    sqlite3_stmt *select = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(q->db,
                                "SELECT id, dest, body FROM dead_letters ORDER BY id", -1,
                                &select, NULL);
    while (rc == SQLITE_OK && sqlite3_step(select) == SQLITE_ROW) {
        const char *dest = (const char *)sqlite3_column_text(select, 1);
        int known = 0;
        for (size_t i = 0; i < destination_count; i++)
            if (strcmp(destinations[i], dest) == 0)
                known = 1;
        if (!known || (destination != NULL && strcmp(destination, dest) != 0))
            continue;
        int64_t dead_id = sqlite3_column_int64(select, 0);
        int length = sqlite3_column_bytes(select, 2);
        sqlite3_stmt *s = statement(q, ST_EVENT_INSERT);
        sqlite3_bind_int64(s, 1, now_ms);
        sqlite3_bind_text(s, 2, "replay", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, length);
        sqlite3_bind_blob(s, 4, sqlite3_column_blob(select, 2), length, SQLITE_TRANSIENT);
        if ((rc = step_done(s)) != SQLITE_OK)
            break;
        int64_t id = sqlite3_last_insert_rowid(q->db);
        s = statement(q, ST_OUTBOX_INSERT);
        sqlite3_bind_text(s, 1, dest, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, id);
        sqlite3_bind_int64(s, 3, 0);
        if ((rc = step_done(s)) != SQLITE_OK)
            break;
        char sql[96];
        snprintf(sql, sizeof sql, "DELETE FROM dead_letters WHERE id = %" PRId64, dead_id);
        if ((rc = exec(q->db, sql)) != SQLITE_OK || (rc = counter_add(q, "queue_events", 1)) ||
            (rc = counter_add(q, "queue_bytes", length)))
            break;
        (*replayed)++;
    }
    sqlite3_finalize(select);
    herald_status st = finish(q, rc);
    if (st != HERALD_OK)
        *replayed = 0;
    return st;
}

herald_status herald_queue_release_held(herald_queue *q, uint64_t *released)
{
    *released = 0;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(q->db, "UPDATE outbox SET next_at = 0 WHERE next_at = ?1", -1, &s,
                                NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, HERALD_QUEUE_HELD);
        rc = sqlite3_step(s) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(q->db);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK)
        return HERALD_E_STORAGE;
    *released = (uint64_t)sqlite3_changes(q->db);
    return HERALD_OK;
}

herald_status herald_queue_held_count(herald_queue *q, uint64_t *count)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(q->db, "SELECT count(*) FROM outbox WHERE next_at = ?1", -1, &s,
                                NULL);
    *count = 0;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, HERALD_QUEUE_HELD);
        if (sqlite3_step(s) == SQLITE_ROW)
            *count = (uint64_t)sqlite3_column_int64(s, 0);
        else
            rc = SQLITE_ERROR;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? HERALD_OK : HERALD_E_STORAGE;
}

herald_status herald_queue_erase_ids(herald_queue *q, const char *anonymous_id,
                                     const char *user_id, const herald_meta_update *meta,
                                     size_t meta_count, uint64_t *erased)
{
    *erased = 0;
    static const char *const sql[] = {
        /* The matching events, in a temporary table so that every step below
         * sees the same set. */
        "CREATE TEMP TABLE IF NOT EXISTS erase_ids(id INTEGER PRIMARY KEY)",
        "DELETE FROM erase_ids",
        "INSERT INTO erase_ids SELECT id FROM events WHERE json_valid(CAST(body AS TEXT)) AND "
        "(json_extract(CAST(body AS TEXT), '$.anonymousId') IN (?1, ?2) OR json_extract(CAST(body AS TEXT), '$.userId') IN (?1, ?2))",
        "DELETE FROM outbox WHERE event_id IN (SELECT id FROM erase_ids)",
        "UPDATE counters SET value = value - (SELECT count(*) FROM erase_ids) WHERE name = 'queue_events'",
        "UPDATE counters SET value = value - (SELECT total(bytes) FROM events WHERE id IN "
        "(SELECT id FROM erase_ids)) WHERE name = 'queue_bytes'",
        "DELETE FROM events WHERE id IN (SELECT id FROM erase_ids)",
        "DELETE FROM dead_letters WHERE json_valid(CAST(body AS TEXT)) AND "
        "(json_extract(CAST(body AS TEXT), '$.anonymousId') IN (?1, ?2) OR json_extract(CAST(body AS TEXT), '$.userId') IN (?1, ?2))",
    };
    /* secure_delete zeroes the content of deleted rows in place; only for
     * this transaction, since every delivery deletes rows too. */
    exec(q->db, "PRAGMA secure_delete = ON");
    int rc = begin(q);
    uint64_t count = 0;
    size_t steps = anonymous_id || user_id ? sizeof sql / sizeof *sql : 0;
    for (size_t i = 0; rc == SQLITE_OK && i < steps; i++) {
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(q->db, sql[i], -1, &s, NULL);
        if (rc != SQLITE_OK)
            break;
        if (sqlite3_bind_parameter_count(s) >= 2) {
            /* A NULL id matches nothing: IN (NULL, x) is never true for NULL. */
            sqlite3_bind_text(s, 1, anonymous_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, user_id, -1, SQLITE_STATIC);
        }
        rc = sqlite3_step(s) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(q->db);
        sqlite3_finalize(s);
        if (rc == SQLITE_OK && (i == 2 || i == 7))
            count += (uint64_t)sqlite3_changes(q->db);
    }
    if (rc == SQLITE_OK)
        rc = meta_write(q, meta, meta_count);
    if (rc == SQLITE_OK)
        rc = commit(q);
    if (rc != SQLITE_OK) {
        herald_log(q->logger, HERALD_LOG_ERROR, "erasing a user's events: %s",
                   sqlite3_errmsg(q->db));
        rollback(q);
        exec(q->db, "PRAGMA secure_delete = OFF");
        return HERALD_E_STORAGE;
    }
    exec(q->db, "PRAGMA secure_delete = OFF");
    /* Earlier page images still sit in the WAL: checkpoint and truncate it. */
    exec(q->db, "PRAGMA wal_checkpoint(TRUNCATE)");
    *erased = count;
    return HERALD_OK;
}
