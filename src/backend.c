#include "backend.h"

#include <stdio.h>
#include <string.h>

const herald_backend_v1 *herald_backend_find(const char *name)
{
    if (name == NULL)
        return NULL;
    const herald_backend_v1 *builtins[] = {herald_backend_rest()};
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        if (strcmp(builtins[i]->name, name) == 0)
            return builtins[i];
    return NULL;
}

void herald_verdict_from_status(const herald_backend_response *response, herald_verdict *out)
{
    long status = response->status;
    out->dropped = 0;
    if (status == 0) {
        out->kind = HERALD_VERDICT_RETRY;
        snprintf(out->reason, sizeof out->reason, "no response: %s",
                 response->transport_error ? response->transport_error : "transport failure");
        return;
    }
    if (status >= 200 && status < 300) {
        out->kind = HERALD_VERDICT_OK;
        snprintf(out->reason, sizeof out->reason, "HTTP %ld", status);
        return;
    }
    if (status == 413)
        out->kind = HERALD_VERDICT_SPLIT;
    else if (status == 408 || status == 429 || status >= 500)
        out->kind = HERALD_VERDICT_RETRY;
    else
        out->kind = HERALD_VERDICT_REJECT;
    /* Keep the first line of the body, printable ASCII only: it says why. */
    char excerpt[160];
    size_t n = 0;
    for (size_t i = 0; response->body && i < response->body_length && n + 1 < sizeof excerpt; i++) {
        char ch = response->body[i];
        if (ch == '\n' || ch == '\r')
            break;
        excerpt[n++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    excerpt[n] = '\0';
    snprintf(out->reason, sizeof out->reason, "HTTP %ld%s%s", status, n ? ": " : "", excerpt);
}
