#!/usr/bin/env node
// Drives one peer SDK from npm with herald's benchmark event, in the modes of
// tests/bench/bench_pipeline.c, and prints one `RESULT mode=... key=value ...`
// line with the same keys (tests/bench/compare.sh reads them).
//
//   node tests/bench/peers/peer.js <segment|posthog|rudder> <mode> [options]
//
//   latency    --count N [--url URL]   time every track call
//   throughput --count N --url URL     burst, flush, until the sink counted N
//   offline    --count N               burst with the sink unreachable: peak RSS
//   kill       --count N --url URL     a child tracks N and SIGKILLs itself
//                                      when the last call returns; lost = N -
//                                      distinct events the sink counted
//
// Options: --url URL (a tests/bench/sink.js URL; its base serves /stats and
// /reset), --batch N (events per request, default 100), --no-gzip,
// --timeout-ms MS (longest wait for delivery, default 300000), --yield-every K
// (let the event loop turn once every K calls; default 0: one synchronous
// burst. compare.sh gives RudderStack 100: see docs/performance.md),
// --max-seconds S (offline: stop the burst after S seconds and report how far
// it got; default 0, no limit), --stall-ms MS (kill: the sink answers MS late
// while the child runs, as bench_pipeline's option of the same name).
//
// The event: track "Bench Event" with the 8 typical properties and "seq"
// (0..N-1), a fixed anonymous id (PostHog: distinct id), and the context
// herald fills by itself (app name/version, os, device type/arch, timezone;
// PostHog: the matching $-properties), so that the bodies compare. The
// properties object is built before the clock starts; each timed interval is
// the SDK's track/capture call alone.
//
// SDK settings (see docs/performance.md): batches of --batch events; queue
// bounds raised to hold N (posthog-node's default maxQueueSize 10,000 and
// RudderStack's maxInternalQueueSize 20,000 would otherwise drop events of a
// burst on purpose); gzip as the SDK offers it (posthog-node and RudderStack
// gzip by default; @segment/analytics-node has no compression); retries and
// flush intervals at their defaults.
'use strict';

const http = require('http');
const os = require('os');
const fs = require('fs');
const { spawn } = require('child_process');
const { performance } = require('perf_hooks');

// The SDKs' own warnings (e.g. MaxListenersExceededWarning from many requests
// in flight) would only add noise to the output.
process.removeAllListeners('warning');

const SDKS = ['segment', 'posthog', 'rudder'];
const MODES = ['latency', 'throughput', 'offline', 'kill', 'kill-child'];

function usage(msg) {
  if (msg) process.stderr.write(`peer.js: ${msg}\n`);
  process.stderr.write('usage: node peer.js <segment|posthog|rudder> <latency|throughput|offline|kill>'
    + ' --count N [--url URL] [--batch N] [--no-gzip] [--timeout-ms MS] [--yield-every K]'
    + ' [--max-seconds S] [--stall-ms MS]\n');
  process.exit(2);
}

const argv = process.argv.slice(2);
const sdk = argv[0];
const mode = argv[1];
if (!SDKS.includes(sdk) || !MODES.includes(mode)) usage();
const opt = { count: 20000, url: null, batch: 100, gzip: true, timeoutMs: 300000, yieldEvery: 0, maxSeconds: 0, stallMs: 0 };
for (let i = 2; i < argv.length; i++) {
  const a = argv[i];
  const v = argv[i + 1];
  if (a === '--count' && v) { opt.count = Number(v); i++; }
  else if (a === '--url' && v) { opt.url = v; i++; }
  else if (a === '--batch' && v) { opt.batch = Number(v); i++; }
  else if (a === '--timeout-ms' && v) { opt.timeoutMs = Number(v); i++; }
  else if (a === '--yield-every' && v) { opt.yieldEvery = Number(v); i++; }
  else if (a === '--max-seconds' && v) { opt.maxSeconds = Number(v); i++; }
  else if (a === '--stall-ms' && v) { opt.stallMs = Number(v); i++; }
  else if (a === '--no-gzip') opt.gzip = false;
  else usage(`unknown argument ${a}`);
}
if (!(opt.count > 0)) usage('--count must be positive');

// --------------------------------------------------------------------------
// The event

const ANON_ID = '20cbd493-01a5-4ba2-ae0f-9372ba200a4c';
const EVENT = 'Bench Event';

function osRelease() {
  try {
    const text = fs.readFileSync('/etc/os-release', 'utf8');
    const get = (k) => { const m = text.match(new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm')); return m ? m[1] : undefined; };
    return { name: get('NAME') || os.type(), version: get('VERSION_ID') || os.release() };
  } catch (e) {
    return { name: os.type(), version: os.release() };
  }
}
const OS = osRelease();
const CONTEXT = {
  app: { name: 'herald-bench', version: '1.0.0' },
  os: OS,
  device: { type: 'server', arch: process.arch === 'x64' ? 'x86_64' : process.arch },
  timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
};
const POSTHOG_CONTEXT = {
  $app_name: CONTEXT.app.name,
  $app_version: CONTEXT.app.version,
  $os: OS.name,
  $os_version: OS.version,
  $device_type: CONTEXT.device.type,
  $timezone: CONTEXT.timezone,
};

function props(seq) {
  return {
    plan: 'pro', seats: 12, price: 99.5, trial: false, source: 'bench',
    region: 'eu-west-1', tier: 3, ratio: 0.25, seq,
  };
}

// --------------------------------------------------------------------------
// The sink (tests/bench/sink.js)

function sinkBase(url) {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

function sinkCall(method, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`${method} ${url}: HTTP ${res.statusCode}`));
        try { resolve(JSON.parse(Buffer.concat(chunks).toString())); } catch (e) { reject(e); }
      });
    });
    req.on('error', reject);
    req.end(body || '');
  });
}
const sinkStats = (url) => sinkCall('GET', `${sinkBase(url)}/stats`);
const sinkReset = (url) => sinkCall('POST', `${sinkBase(url)}/reset`);
const sinkDelay = (url, ms) => sinkCall('POST', `${sinkBase(url)}/config`, JSON.stringify({ delay_ms: ms }));

// A loopback port nothing listens on.
function closedPort() {
  return new Promise((resolve) => {
    const s = require('net').createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tick = () => new Promise((r) => setImmediate(r));

// --------------------------------------------------------------------------
// The SDKs: make(base) -> { track(seq), flush(): Promise, queued(): n }

function makeClient(base) {
  if (sdk === 'segment') {
    const { Analytics } = require('@segment/analytics-node');
    // No gzip option exists in @segment/analytics-node: bodies go uncompressed.
    const a = new Analytics({
      writeKey: 'bench-write-key', host: base, path: '/v1/batch',
      flushAt: opt.batch, maxEventsInBatch: opt.batch,
    });
    a.on('error', () => {});
    return {
      settings: `flushAt=${opt.batch} flushInterval=10000(default) gzip=unsupported maxRetries=10(default) queue=unbounded`,
      track(seq) {
        a.track({ anonymousId: ANON_ID, event: EVENT, properties: props(seq), context: CONTEXT });
      },
      // Resolves when every event has an answer (or failed for good).
      flush: () => a.closeAndFlush({ timeout: opt.timeoutMs }),
    };
  }
  if (sdk === 'posthog') {
    const { PostHog } = require('posthog-node');
    const ph = new PostHog('phc_BenchBenchBenchBenchBenchBenchBenchBench123', {
      host: base, flushAt: opt.batch, maxBatchSize: opt.batch,
      maxQueueSize: Math.max(opt.count + 1000, 10000), disableCompression: !opt.gzip,
      disableGeoip: true,
    });
    ph.on('error', () => {});
    return {
      settings: `flushAt=${opt.batch} maxBatchSize=${opt.batch} maxQueueSize=${Math.max(opt.count + 1000, 10000)}`
        + ` flushInterval=5000(default) gzip=${opt.gzip} fetchRetryCount=3(default)`,
      track(seq) {
        ph.capture({ distinctId: ANON_ID, event: EVENT, properties: Object.assign(props(seq), POSTHOG_CONTEXT) });
      },
      flush: async () => {
        await ph.flush();
        await ph.shutdown(opt.timeoutMs);
      },
    };
  }
  // rudder
  const Analytics = require('@rudderstack/rudder-sdk-node');
  const r = new Analytics('bench-write-key', {
    dataPlaneUrl: base, flushAt: opt.batch,
    maxInternalQueueSize: Math.max(opt.count + 1000, 20000), gzip: opt.gzip,
    logLevel: 'none', errorHandler: () => {},
  });
  return {
    settings: `flushAt=${opt.batch} maxInternalQueueSize=${Math.max(opt.count + 1000, 20000)}`
      + ` maxQueueSize=460800B(default) flushInterval=10000(default) gzip=${opt.gzip} retryCount=3(default)`,
    track(seq) {
      r.track({ anonymousId: ANON_ID, event: EVENT, properties: props(seq), context: CONTEXT });
    },
    flush: async () => {
      // flush() sends one batch of flushAt; repeat until the queue is empty
      // and the last request has its answer.
      const deadline = Date.now() + opt.timeoutMs;
      while (r.queue.length > 0 && Date.now() < deadline) {
        try { await r.flush(); } catch (e) { await sleep(50); }
      }
      try { if (r.pendingFlush) await r.pendingFlush; } catch (e) { /* counted at the sink */ }
    },
  };
}

// --------------------------------------------------------------------------
// Measurements

function quantiles(samples) {
  const s = Float64Array.from(samples).sort();
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i];
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: s[s.length - 1], mean: sum / s.length };
}

const cpuUs = () => { const u = process.cpuUsage(); return u.user + u.system; };
// VmHWM: the high-water mark of this process image (getrusage's maxRSS would
// include what the parent had at the fork, Linux keeps it across execve).
function peakRssKb() {
  try {
    const m = fs.readFileSync('/proc/self/status', 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
    if (m) return Number(m[1]);
  } catch (e) { /* not Linux */ }
  return process.resourceUsage().maxRSS;
}
const rssKb = () => Math.round(process.memoryUsage().rss / 1024);

function result(fields) {
  const parts = [`mode=${mode}`, `sdk=${sdk}`];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(`${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : v}`);
  }
  process.stdout.write(`RESULT ${parts.join(' ')}\n`);
}

// Burst: N calls in one synchronous loop, each timed. Then one turn of the
// event loop, so that the work SDKs defer to promise jobs (posthog-node and
// Segment prepare and enqueue events asynchronously) has run: "accepted"
// is the time at which every event is in the SDK's queue.
async function burst(client, timeEach) {
  const n = opt.count;
  const lat = timeEach ? new Float64Array(n) : null;
  const cpu0 = cpuUs();
  const t0 = performance.now();
  const every = opt.yieldEvery;
  const limitMs = opt.maxSeconds > 0 ? opt.maxSeconds * 1000 : Infinity;
  let done = n;
  for (let i = 0; i < n; i++) {
    const p = i; // seq
    if (i > 0 && i % 100 === 0 && performance.now() - t0 > limitMs) { done = i; break; }
    if (every > 0 && i > 0 && i % every === 0) await tick();
    if (timeEach) {
      const a = performance.now();
      client.track(p);
      lat[i] = performance.now() - a;
    } else {
      client.track(p);
    }
  }
  const tLoop = performance.now();
  await tick();
  const tAccepted = performance.now();
  return { lat, t0, tLoop, tAccepted, cpuBurst: cpuUs() - cpu0, done };
}

async function runLatency() {
  const base = opt.url ? sinkBase(opt.url) : `http://127.0.0.1:${await closedPort()}`;
  const client = makeClient(base);
  const rssOpen = rssKb();
  const b = await burst(client, true);
  const q = quantiles(b.lat);
  const n = opt.count;
  const secs = (b.tAccepted - b.t0) / 1000;
  console.log(`${sdk} latency: ${n} calls (${client.settings})`);
  console.log(`  per call (µs): p50 ${(q.p50 * 1000).toFixed(2)}  p90 ${(q.p90 * 1000).toFixed(2)}`
    + `  p99 ${(q.p99 * 1000).toFixed(2)}  p99.9 ${(q.p999 * 1000).toFixed(2)}  max ${(q.max * 1000).toFixed(1)}`);
  console.log(`  loop ${((b.tLoop - b.t0) / 1000).toFixed(3)} s, all accepted ${secs.toFixed(3)} s:`
    + ` ${(n / secs).toFixed(0)} calls/s; CPU ${(b.cpuBurst / n).toFixed(2)} µs/event; peak RSS ${peakRssKb()} KiB`);
  result({
    count: n, p50_us: q.p50 * 1000, p90_us: q.p90 * 1000, p99_us: q.p99 * 1000,
    p999_us: q.p999 * 1000, max_us: q.max * 1000, mean_us: q.mean * 1000,
    calls_per_s: Math.round(n / secs), loop_calls_per_s: Math.round(n / ((b.tLoop - b.t0) / 1000)),
    cpu_us_per_event: b.cpuBurst / n, peak_rss_kb: peakRssKb(), rss_open_kb: rssOpen,
  });
  process.exit(0);
}

async function runThroughput() {
  if (!opt.url) usage('throughput needs --url');
  await sinkReset(opt.url);
  const client = makeClient(sinkBase(opt.url));
  const n = opt.count;
  const cpu0 = cpuUs();
  const b = await burst(client, false);
  await client.flush();
  let s = await sinkStats(opt.url);
  const tFlushed = performance.now();
  // The flush resolved: every request has its answer. Should some events be
  // missing, wait (at most 5 s) for stragglers before counting them lost.
  const deadline = Date.now() + 5000;
  while (s.distinct < n && Date.now() < deadline) {
    await sleep(50);
    s = await sinkStats(opt.url);
  }
  const tEnd = s.distinct < n ? performance.now() : tFlushed;
  const cpu = cpuUs() - cpu0;
  const secs = (tEnd - b.t0) / 1000;
  const rate = s.distinct / secs;
  console.log(`${sdk} throughput: ${n} events (${client.settings})`);
  console.log(`  calls ${((b.tAccepted - b.t0) / 1000).toFixed(3)} s, first call to last delivery`
    + ` ${secs.toFixed(3)} s: ${rate.toFixed(0)} events/s; CPU ${(cpu / n).toFixed(2)} µs/event; peak RSS ${peakRssKb()} KiB`);
  console.log(`  sink: ${s.distinct} distinct (${s.total_events} seen), ${s.requests} requests,`
    + ` ${(s.wire_bytes / n).toFixed(1)} wire bytes/event (${(s.body_bytes / n).toFixed(1)} body,`
    + ` ${(s.header_bytes / n).toFixed(1)} headers, ${(s.raw_bytes / n).toFixed(1)} before gzip), gzip requests ${s.gzip_requests}`);
  result({
    count: n, events_per_s: Math.round(rate), calls_per_s: Math.round(n / ((b.tAccepted - b.t0) / 1000)),
    total_s: secs, cpu_us_per_event: cpu / n, peak_rss_kb: peakRssKb(), delivered: s.distinct,
    sink_distinct: s.distinct, sink_events: s.total_events, sink_requests: s.requests,
    wire_bytes_per_event: s.wire_bytes / n, sink_body_bytes_per_event: s.body_bytes / n,
    sink_header_bytes_per_event: s.header_bytes / n, raw_bytes_per_event: s.raw_bytes / n,
    gzip_requests: s.gzip_requests,
  });
  process.exit(s.distinct === n ? 0 : 1);
}

async function runOffline() {
  const port = await closedPort();
  const client = makeClient(`http://127.0.0.1:${port}`);
  const rssOpen = rssKb();
  const b = await burst(client, false);
  // Let the SDK try (and fail) to send for a moment: retries hold memory too.
  await sleep(1000);
  const n = b.done;
  const secs = (b.tAccepted - b.t0) / 1000;
  const heap = process.memoryUsage();
  console.log(`${sdk} offline: ${n} events, sink unreachable (${client.settings})`);
  if (n < opt.count) console.log(`  stopped after ${opt.maxSeconds} s: ${n} of ${opt.count} calls made`);
  console.log(`  ${(n / secs).toFixed(0)} calls/s; peak RSS ${peakRssKb()} KiB (${rssOpen} KiB after creating the client);`
    + ` heap used ${(heap.heapUsed / 1048576).toFixed(1)} MiB`);
  result({
    count: opt.count, count_done: n, peak_rss_kb: peakRssKb(), rss_open_kb: rssOpen, rss_kb: rssKb(),
    heap_used_kb: Math.round(heap.heapUsed / 1024), calls_per_s: Math.round(n / secs),
    cpu_us_per_event: b.cpuBurst / n,
  });
  process.exit(0);
}

// The child of kill mode: burst, then SIGKILL as soon as the last call returns.
async function runKillChild() {
  const client = makeClient(sinkBase(opt.url));
  const n = opt.count;
  for (let i = 0; i < n; i++) {
    if (opt.yieldEvery > 0 && i > 0 && i % opt.yieldEvery === 0) await tick();
    client.track(i);
  }
  process.stdout.write(`calls ${n}\n`);
  process.kill(process.pid, 'SIGKILL');
}

async function runKill() {
  if (!opt.url) usage('kill needs --url');
  await sinkReset(opt.url);
  if (opt.stallMs > 0) await sinkDelay(opt.url, opt.stallMs);
  const args = [__filename, sdk, 'kill-child', '--count', String(opt.count), '--url', opt.url,
    '--batch', String(opt.batch), '--yield-every', String(opt.yieldEvery)].concat(opt.gzip ? [] : ['--no-gzip']);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  const t0 = performance.now();
  const [code, signal] = await new Promise((r) => child.on('exit', (c, s) => r([c, s])));
  const secs = (performance.now() - t0) / 1000;
  if (opt.stallMs > 0) await sinkDelay(opt.url, 0);
  // Anything the child had in flight has reached the sink by now, or never will.
  await sleep(1000);
  const s = await sinkStats(opt.url);
  const n = opt.count;
  const m = out.match(/calls (\d+)/);
  const ok = m ? Number(m[1]) : -1;
  const killed = signal === 'SIGKILL' ? 1 : 0;
  console.log(`${sdk} kill: child tracked ${ok}/${n} events in ${secs.toFixed(3)} s and was`
    + ` ${killed ? 'killed by SIGKILL' : `not killed (code ${code}, signal ${signal})`}`);
  console.log(`  the sink counted ${s.distinct} distinct events: lost ${n - s.distinct} of ${n}`);
  result({
    count: n, ok_calls: ok, killed, delivered: s.distinct, lost: n - s.distinct,
    duplicates: s.total_events - s.distinct,
  });
  process.exit(0);
}

const run = { latency: runLatency, throughput: runThroughput, offline: runOffline, kill: runKill, 'kill-child': runKillChild }[mode];
run().catch((e) => {
  process.stderr.write(`peer.js ${sdk} ${mode}: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
