/*
 * herald-emit — messages on stderr, secret scrubbing, herald's log callback
 * and the import progress bar.
 *
 * Every write to stderr takes the stderr lock (flockfile), because herald's
 * delivery thread may log while the main thread draws the progress bar. A
 * message first erases the bar; the next progress update draws it again.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int verbosity;

void out_set_verbosity(int v) { verbosity = v; }
int out_verbosity(void) { return verbosity; }

void die_nomem(void)
{
    fputs(PROG ": out of memory\n", stderr);
    exit(EXIT_RUNTIME);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die_nomem();
    return p;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* ------------------------------------------------------------------------ */
/* Secrets                                                                   */
/* ------------------------------------------------------------------------ */

/* Shorter values are not scrubbed from herald's text: they would mangle
 * unrelated words, and herald promises not to log them in the first place.
 * herald-emit itself never prints header values or write keys at all. */
#define SECRET_MIN_LEN 4

static char **secrets;
static size_t secret_count;

static void secret_push(char *s)
{
    char **n = realloc(secrets, (secret_count + 1) * sizeof *secrets);
    if (!n)
        die_nomem();
    secrets = n;
    secrets[secret_count++] = s;
}

static char *base64(const unsigned char *in, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = xmalloc((len + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

void secret_add(const char *s)
{
    if (!s || strlen(s) < SECRET_MIN_LEN)
        return;
    for (size_t i = 0; i < secret_count; i++)
        if (strcmp(secrets[i], s) == 0)
            return;
    secret_push(xstrdup(s));
    /* The same value as it travels in an HTTP Basic Authorization header
     * (write key as user name, empty password). */
    size_t n = strlen(s);
    char *userpass = xmalloc(n + 2);
    memcpy(userpass, s, n);
    userpass[n] = ':';
    userpass[n + 1] = '\0';
    secret_push(base64((const unsigned char *)userpass, n + 1));
    free(userpass);
}

void secret_clear(void)
{
    for (size_t i = 0; i < secret_count; i++) {
        /* Do not leave the secrets lying around in freed memory. */
        volatile char *p = secrets[i];
        while (*p)
            *p++ = 0;
        free(secrets[i]);
    }
    free(secrets);
    secrets = NULL;
    secret_count = 0;
}

char *scrub(const char *text)
{
    if (!text)
        text = "";
    size_t cap = strlen(text) + 1, len = 0;
    char *out = xmalloc(cap);
    const char *p = text;
    while (*p) {
        size_t matched = 0;
        for (size_t i = 0; i < secret_count; i++) {
            size_t n = strlen(secrets[i]);
            if (n > matched && strncmp(p, secrets[i], n) == 0)
                matched = n;
        }
        const char *piece;
        size_t piece_len;
        char c[1];
        if (matched) {
            piece = "***";
            piece_len = 3;
            p += matched;
        } else {
            unsigned char ch = (unsigned char)*p++;
            c[0] = (ch < 0x20 && ch != '\t') || ch == 0x7f ? '?' : (char)ch;
            piece = c;
            piece_len = 1;
        }
        if (len + piece_len + 1 > cap) {
            cap = (len + piece_len + 1) * 2;
            char *n = realloc(out, cap);
            if (!n)
                die_nomem();
            out = n;
        }
        memcpy(out + len, piece, piece_len);
        len += piece_len;
    }
    out[len] = '\0';
    return out;
}

void scrub_json(json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        int hit = 0;
        for (size_t i = 0; i < secret_count && !hit; i++)
            hit = strstr(s, secrets[i]) != NULL;
        if (hit) {
            /* Keep control characters (JSON escapes them); only mask secrets. */
            size_t cap = strlen(s) + 1, len = 0;
            char *out = xmalloc(cap);
            while (*s) {
                size_t matched = 0;
                for (size_t i = 0; i < secret_count; i++) {
                    size_t n = strlen(secrets[i]);
                    if (n > matched && strncmp(s, secrets[i], n) == 0)
                        matched = n;
                }
                if (matched) {
                    s += matched;
                    if (len + 4 > cap) {
                        cap = cap * 2 + 4;
                        char *n = realloc(out, cap);
                        if (!n)
                            die_nomem();
                        out = n;
                    }
                    memcpy(out + len, "***", 3);
                    len += 3;
                } else {
                    if (len + 2 > cap) {
                        cap = cap * 2 + 2;
                        char *n = realloc(out, cap);
                        if (!n)
                            die_nomem();
                        out = n;
                    }
                    out[len++] = *s++;
                }
            }
            out[len] = '\0';
            json_string_set(v, out);
            free(out);
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val)
            scrub_json(val);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *val;
        json_array_foreach(v, i, val)
            scrub_json(val);
    }
}

/* ------------------------------------------------------------------------ */
/* Progress bar state (guarded by the stderr lock)                           */
/* ------------------------------------------------------------------------ */

static struct {
    int enabled;
    int visible;         /* something is drawn on the current line */
    size_t drawn_len;    /* its length, to erase it */
    uint64_t total;      /* bytes; 0: unknown */
    double started;
    double last_draw;
} bar;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Caller holds the stderr lock. */
static void bar_erase_locked(void)
{
    if (!bar.visible)
        return;
    fputc('\r', stderr);
    for (size_t i = 0; i < bar.drawn_len; i++)
        fputc(' ', stderr);
    fputc('\r', stderr);
    fflush(stderr);
    bar.visible = 0;
    bar.drawn_len = 0;
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

static void vemit(const char *level, const char *fmt, va_list ap)
{
    char stackbuf[512];
    char *buf = stackbuf;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(stackbuf, sizeof stackbuf, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n >= sizeof stackbuf) {
        buf = xmalloc((size_t)n + 1);
        vsnprintf(buf, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);

    flockfile(stderr);
    bar_erase_locked();
    fputs(PROG ": ", stderr);
    if (level)
        fprintf(stderr, "%s: ", level);
    fputs(buf, stderr);
    fputc('\n', stderr);
    fflush(stderr);
    funlockfile(stderr);
    if (buf != stackbuf)
        free(buf);
}

void out_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(NULL, fmt, ap);
    va_end(ap);
}

void out_warn(const char *fmt, ...)
{
    if (verbosity < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vemit(NULL, fmt, ap);
    va_end(ap);
}

void out_info(const char *fmt, ...)
{
    if (verbosity < 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    vemit(NULL, fmt, ap);
    va_end(ap);
}

void out_debug(const char *fmt, ...)
{
    if (verbosity < 2)
        return;
    va_list ap;
    va_start(ap, fmt);
    vemit(NULL, fmt, ap);
    va_end(ap);
}

void out_log(herald_log_level level, const char *message, void *userdata)
{
    (void)userdata;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    const char *name = (unsigned)level < 4 ? names[level] : "log";
    char *clean = scrub(message);
    flockfile(stderr);
    bar_erase_locked();
    fprintf(stderr, PROG ": herald %s: %s\n", name, clean);
    fflush(stderr);
    funlockfile(stderr);
    free(clean);
}

/* ------------------------------------------------------------------------ */
/* Progress bar                                                              */
/* ------------------------------------------------------------------------ */

void progress_start(uint64_t total_bytes)
{
    flockfile(stderr);
    bar.enabled = verbosity >= 0 && isatty(STDERR_FILENO);
    bar.visible = 0;
    bar.drawn_len = 0;
    bar.total = total_bytes;
    bar.started = now_s();
    bar.last_draw = 0;
    funlockfile(stderr);
}

static void human_bytes(char *buf, size_t len, uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof *units) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
}

static size_t term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
        return ws.ws_col;
    return 80;
}

void progress_update(uint64_t bytes, uint64_t lines, uint64_t events, uint64_t bad)
{
    if (!bar.enabled)
        return;
    double t = now_s();
    if (bar.last_draw > 0 && t - bar.last_draw < 0.1)
        return;

    char line[512], done[32], total[32], badbuf[48] = "";
    double elapsed = t - bar.started;
    double rate = elapsed > 0.05 ? (double)lines / elapsed : 0.0;
    human_bytes(done, sizeof done, bytes);
    if (bad)
        snprintf(badbuf, sizeof badbuf, ", %llu bad", (unsigned long long)bad);
    size_t width = term_width() - 1;
    if (width >= sizeof line)
        width = sizeof line - 1;

    if (bar.total) {
        double frac = (double)bytes / (double)bar.total;
        if (frac > 1.0)
            frac = 1.0;
        human_bytes(total, sizeof total, bar.total);
        char tail[200];
        int tl = snprintf(tail, sizeof tail, " %3d%%  %s / %s  %llu events%s",
                          (int)(frac * 100.0), done, total, (unsigned long long)events, badbuf);
        size_t tail_len = tl > 0 ? (size_t)tl : 0;
        /* a fixed width while the text beside it grows, if it fits */
        size_t barw = width > tail_len + 12 + 10 ? width - tail_len - 12 : 10;
        if (barw > 30)
            barw = 30;
        size_t filled = (size_t)(frac * (double)barw);
        size_t o = 0;
        line[o++] = '[';
        for (size_t i = 0; i < barw && o < sizeof line - 2; i++)
            line[o++] = i < filled ? '#' : '.';
        line[o++] = ']';
        line[o] = '\0';
        snprintf(line + o, sizeof line - o, "%s", tail);
    } else {
        snprintf(line, sizeof line, "%llu lines  %llu events%s  %s  %.0f lines/s",
                 (unsigned long long)lines, (unsigned long long)events, badbuf, done, rate);
    }
    size_t len = strlen(line);
    if (len > width) {
        len = width;
        line[len] = '\0';
    }

    flockfile(stderr);
    fputc('\r', stderr);
    fputs(line, stderr);
    for (size_t i = len; i < bar.drawn_len; i++)
        fputc(' ', stderr);
    if (bar.drawn_len > len) {
        fputc('\r', stderr);
        fputs(line, stderr);
    }
    fflush(stderr);
    bar.visible = 1;
    bar.drawn_len = len;
    bar.last_draw = t;
    funlockfile(stderr);
}

void progress_finish(void)
{
    flockfile(stderr);
    bar_erase_locked();
    bar.enabled = 0;
    funlockfile(stderr);
}
