#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void herald_log(const herald_logger *logger, herald_log_level level, const char *fmt, ...)
{
    if (logger == NULL || logger->fn == NULL || level > logger->level)
        return;
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    logger->fn(level, message, logger->userdata);
}

void herald_error_format(char *buf, size_t buflen, const char *fmt, ...)
{
    if (buf == NULL || buflen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, buflen, fmt, ap);
    va_end(ap);
}

static _Thread_local char open_error[512];

void herald_open_error_set(const char *message)
{
    snprintf(open_error, sizeof open_error, "%s", message ? message : "");
}

const char *herald_open_error_get(void)
{
    return open_error;
}
