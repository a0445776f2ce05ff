#include "batch.h"

herald_batch_cut herald_batch_plan(const herald_queue_row *rows, size_t count,
                                   const herald_batch_rules *rules, int64_t now_ms)
{
    herald_batch_cut cut = {0, 0, 0};
    if (count == 0)
        return cut;
    size_t max_events = rules->max_events ? rules->max_events : 1;
    size_t bytes = 0;
    int retry_due = 0;
    /* Each event costs its length plus a separator in the request body. */
    while (cut.take < count && cut.take < max_events &&
           (cut.take == 0 || bytes + rows[cut.take].length + 1 <= rules->max_bytes)) {
        bytes += rows[cut.take].length + 1;
        retry_due |= rows[cut.take].attempts > 0;
        cut.take++;
    }
    int full = cut.take == max_events || cut.take < count || bytes >= rules->max_bytes;
    cut.ready_at_ms = rows[0].created_at + rules->flush_interval_ms;
    cut.send_now = full || rules->flushing || retry_due || cut.ready_at_ms <= now_ms;
    return cut;
}
