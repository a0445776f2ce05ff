-- The table herald's clickhouse backend fills with its default column mapping
-- (docs/backends.md, "clickhouse"). One row per event, every event type.
-- Works on ClickHouse 18.16 (Debian's clickhouse-server) and later.
--
--   clickhouse-client --multiquery < docs/clickhouse.sql
--   curl --data-binary @docs/clickhouse.sql ...   (one statement per request)
--
-- Column types are chosen for 18.16: no DateTime64 (the event time is
-- `timestamp` in seconds plus `timestamp_ms`), no LowCardinality (experimental
-- there; on 19.x and later `type`, `event`, `os_name`, `device_type`,
-- `locale`, `timezone`, `app_name`, `app_version` and `library_version` are
-- good LowCardinality(String) candidates), no JSON type (`properties`,
-- `traits` and `context` hold JSON text: read them with JSONExtractString(),
-- JSONExtractInt() … on 19.x+, visitParamExtractString() … on 18.16).
-- Absent values are the type's zero: '' for strings, 0 for numbers.

CREATE TABLE IF NOT EXISTS herald_events
(
    message_id        String,    -- messageId: a UUID, or the caller's id (kept across retries)
    type              String,    -- track, page, screen, identify, group, alias
    event             String,    -- track: the event name; page and screen: their name
    user_id           String,    -- userId (alias: the new id)
    anonymous_id      String,    -- anonymousId
    group_id          String,    -- group: groupId; other events: context.groupId
    previous_id       String,    -- alias: previousId
    timestamp         DateTime,  -- when the call was made (UTC), whole seconds
    timestamp_ms      UInt16,    -- its milliseconds (0..999)
    session_id        Int64,     -- context.session.id (the session's start in unix ms)
    session_sequence  UInt32,    -- context.session.sequence (1, 2, ... within the session)
    page_url          String,    -- context.page.url
    page_path         String,    -- context.page.path
    page_title        String,    -- context.page.title
    page_referrer     String,    -- context.page.referrer
    campaign_source   String,    -- context.campaign.source (utm_source)
    campaign_medium   String,    -- context.campaign.medium (utm_medium)
    campaign_name     String,    -- context.campaign.name (utm_campaign)
    app_name          String,    -- context.app.name
    app_version       String,    -- context.app.version
    os_name           String,    -- context.os.name
    os_version        String,    -- context.os.version
    device_type       String,    -- context.device.type: server, desktop, container, mobile
    locale            String,    -- context.locale
    timezone          String,    -- context.timezone
    user_agent        String,    -- context.userAgent
    library_version   String,    -- context.library.version
    properties        String,    -- JSON text of properties ('{}' when none)
    traits            String,    -- JSON text of traits (identify and group; '{}' otherwise)
    context           String     -- JSON text of the whole context
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (type, event, timestamp);

-- De-duplicated variant. Delivery is at least once: a batch whose response
-- was lost (timeout, crash after the server committed) is sent again, and a
-- plain MergeTree stores it twice (18.16 has no insert_deduplication_token;
-- non-replicated tables do not de-duplicate by default). herald keeps
-- messageId and timestamp across retries, so a retried event is an identical
-- row, and a ReplacingMergeTree whose sorting key ends in message_id keeps one
-- of each. Same columns, only the engine clause differs:
--
--   ENGINE = ReplacingMergeTree
--   PARTITION BY toYYYYMM(timestamp)
--   ORDER BY (type, event, timestamp, message_id);
--
-- Duplicates go away when parts merge (in the background, at a time of the
-- server's choosing). Until then count with FINAL, or with uniqExact():
--
--   SELECT count() FROM herald_events_dedup FINAL WHERE type = 'track';
--   SELECT uniqExact(message_id) FROM herald_events_dedup WHERE type = 'track';
--
-- (OPTIMIZE TABLE herald_events_dedup FINAL forces the merge; costly on big
-- tables.) Keying on (type, event, timestamp) before message_id keeps time
-- range scans cheap; a key of message_id alone would de-duplicate the same but
-- make every query by time read the whole partition.

CREATE TABLE IF NOT EXISTS herald_events_dedup
(
    message_id        String,
    type              String,
    event             String,
    user_id           String,
    anonymous_id      String,
    group_id          String,
    previous_id       String,
    timestamp         DateTime,
    timestamp_ms      UInt16,
    session_id        Int64,
    session_sequence  UInt32,
    page_url          String,
    page_path         String,
    page_title        String,
    page_referrer     String,
    campaign_source   String,
    campaign_medium   String,
    campaign_name     String,
    app_name          String,
    app_version       String,
    os_name           String,
    os_version        String,
    device_type       String,
    locale            String,
    timezone          String,
    user_agent        String,
    library_version   String,
    properties        String,
    traits            String,
    context           String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (type, event, timestamp, message_id);
