/* Logging and error text shared by every stage. */
#ifndef HERALD_LOG_H
#define HERALD_LOG_H

#include <stddef.h>

#include "herald/herald.h"

/* Where a stage sends its diagnostics: the user's callback and level. */
typedef struct herald_logger {
    herald_log_fn fn;
    void *userdata;
    herald_log_level level;
} herald_logger;

#if defined(__GNUC__)
#define HERALD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define HERALD_PRINTF(a, b)
#endif

/* Format and deliver one message if `level` passes the logger's level.
 * Messages longer than 1 KiB are truncated. */
void herald_log(const herald_logger *logger, herald_log_level level, const char *fmt, ...)
    HERALD_PRINTF(3, 4);

/* snprintf into an error buffer that may be NULL or empty. */
void herald_error_format(char *buf, size_t buflen, const char *fmt, ...) HERALD_PRINTF(3, 4);

/* This thread's reason for the last failed herald_open*(). */
void herald_open_error_set(const char *message);
const char *herald_open_error_get(void);

#endif
