// Type declarations for the herald Node.js binding. See docs/node.md.

/** A JSON-convertible value (see "JSON conversion" in docs/node.md). */
export type JsonValue =
  | string
  | number
  | bigint
  | boolean
  | null
  | undefined
  | Date
  | JsonValue[]
  | { [key: string]: JsonValue }
  | { toJSON(key?: string): unknown };

export type Properties = { [key: string]: JsonValue };

/** One destination; `name` and backend settings, see docs/configuration.md. */
export interface Destination {
  name: string;
  backend?: 'rest' | string;
  url?: string;
  mode?: 'batch' | 'single';
  gzip?: boolean;
  gzip_level?: number;
  headers?: { [name: string]: string };
  write_key?: string;
  ca_file?: string;
  insecure_skip_tls_verify?: boolean;
  batch_max_events?: number;
  batch_max_bytes?: number;
  flush_interval_ms?: number;
  retry_base_ms?: number;
  retry_max_delay_ms?: number;
  retry_max_attempts?: number;
  retry_max_age_s?: number;
  connect_timeout_ms?: number;
  request_timeout_ms?: number;
  gzip_min_bytes?: number;
  max_concurrency?: number;
  batch_concurrency?: number;
  [setting: string]: JsonValue;
}

/**
 * Client options: the keys of docs/configuration.md, passed to
 * herald_open_json() as they are (unknown keys are refused with
 * HERALD_E_CONFIG), plus `library`.
 */
export interface HeraldOptions {
  /** The queue file (SQLite). Required. */
  db_path: string;
  destinations?: Destination[];
  max_event_bytes?: number;
  max_queue_events?: number;
  max_queue_bytes?: number;
  max_dead_letters?: number;
  overflow_policy?: 'drop_oldest' | 'reject_new';
  durability?: 'process' | 'power';
  batch_max_events?: number;
  batch_max_bytes?: number;
  flush_interval_ms?: number;
  retry_base_ms?: number;
  retry_max_delay_ms?: number;
  retry_max_attempts?: number;
  retry_max_age_s?: number;
  connect_timeout_ms?: number;
  request_timeout_ms?: number;
  gzip_min_bytes?: number;
  max_concurrency?: number;
  batch_concurrency?: number;
  staging_bytes?: number;
  deliver?: boolean;
  log_level?: 'error' | 'warn' | 'info' | 'debug';
  consent_required?: boolean;
  consent_policy?: 'hold' | 'drop';
  /** Path of libherald.so to load (else $HERALD_LIBRARY, else libherald.so.0). Not sent to the library. */
  library?: string;
  [option: string]: JsonValue;
}

/** Per-call overrides: with any of them set, the call builds a whole message and uses herald_send(). */
export interface Overrides {
  userId?: string;
  anonymousId?: string;
  /** A Date, or an RFC 3339 string. */
  timestamp?: Date | string;
  context?: Properties;
  /** 1..100 bytes; kept, so backends can de-duplicate. */
  messageId?: string;
  /** Destination selection by name, e.g. { All: false, main: true }. */
  integrations?: { [name: string]: JsonValue };
}

export type HeraldErrorCode =
  | 'HERALD_E_INVALID_ARGUMENT'
  | 'HERALD_E_INVALID_JSON'
  | 'HERALD_E_NOT_OBJECT'
  | 'HERALD_E_TOO_LARGE'
  | 'HERALD_E_QUEUE_FULL'
  | 'HERALD_E_STORAGE'
  | 'HERALD_E_NO_MEMORY'
  | 'HERALD_E_CONFIG'
  | 'HERALD_E_TIMEOUT'
  | 'HERALD_E_CLOSED'
  | 'HERALD_E_BACKEND'
  | 'HERALD_E_DISABLED'
  | 'HERALD_E_NO_CONSENT'
  | 'HERALD_E_DROPPED';

export class HeraldError extends Error {
  constructor(status: number, message: string, path?: string);
  readonly name: 'HeraldError';
  /** e.g. 'HERALD_E_QUEUE_FULL' */
  readonly code: HeraldErrorCode | string;
  /** The herald_status number, e.g. -5. */
  readonly status: number;
  /** For values that cannot become JSON: where, e.g. 'properties.cart[2].price'. */
  readonly path?: string;
}

export const STATUS: Readonly<Record<HeraldErrorCode, number>>;
export const OVERRIDES: ReadonlyArray<keyof Overrides>;

export interface DestinationStats {
  name: string;
  backend: string;
  pending: number;
  paused_until_ms: number;
  consecutive_failures: number;
}

export interface Stats {
  queued: number;
  queued_bytes: number;
  pending: number;
  accepted: number;
  rejected: number;
  sent: number;
  retried: number;
  dead: number;
  evicted: number;
  dead_letters: number;
  requests: number;
  bytes_raw: number;
  bytes_sent: number;
  db_path: string;
  last_error: string;
  destinations: DestinationStats[];
  [counter: string]: unknown;
}

export interface DeadLetter {
  id: number;
  destination: string;
  failed_at: string;
  http_status: number;
  reason: string;
  response: string;
  event: { [key: string]: unknown };
}

export class Herald {
  /** Opens (or creates) the queue file and starts delivery. Throws HeraldError. */
  constructor(options: HeraldOptions);
  static libraryVersion(library?: string): string;
  readonly libraryPath: string;
  readonly dbPath: string;
  /** True once close() was called. */
  readonly closed: boolean;

  /** Synchronous: validates and commits to the local queue; no network. */
  track(event: string, properties?: Properties | null, overrides?: Overrides): void;
  page(name?: string | null, properties?: Properties | null, overrides?: Overrides): void;
  screen(name?: string | null, properties?: Properties | null, overrides?: Overrides): void;
  identify(userId: string, traits?: Properties | null, overrides?: Omit<Overrides, 'userId'>): void;
  group(groupId: string, traits?: Properties | null, overrides?: Overrides): void;
  alias(previousId: string, userId: string, overrides?: Omit<Overrides, 'userId'>): void;
  /** A whole Segment message; "type" is required. */
  send(message: { type: string; [field: string]: JsonValue }): void;
  reset(): void;
  setConsent(granted: boolean): void;
  getConsent(): boolean;
  eraseUser(): number;

  stats(): Stats;
  deadLetters(limit?: number): DeadLetter[];
  replayDeadLetters(destination?: string | null): number;

  /** Resolves true when drained, false on timeout. Never blocks the event loop. */
  flush(timeoutMs?: number | null): Promise<boolean>;
  /** Resolves true when drained before closing, false if events remain on disk. */
  close(timeoutMs?: number | null): Promise<boolean>;
}

export function libraryVersion(library?: string): string;
export function toJSON(value: unknown, path: string): string;
