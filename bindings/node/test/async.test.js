'use strict';

// The event loop: track() is a quick synchronous commit with no network;
// flush() and close() run on worker threads and never block the loop.

const { describe, test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { FAST, Receiver, tmpdir } = require('./helpers');
const { Herald } = require('..');

/* Ticks of a 10 ms interval while `fn` runs: count and the largest gap. */
async function ticking(fn) {
  const stamps = [];
  const timer = setInterval(() => stamps.push(performance.now()), 10);
  const t0 = performance.now();
  try {
    const result = await fn();
    const elapsed = performance.now() - t0;
    let gap = stamps.length ? stamps[0] - t0 : elapsed;
    for (let i = 1; i < stamps.length; i++) gap = Math.max(gap, stamps[i] - stamps[i - 1]);
    return { result, elapsed, ticks: stamps.length, gap };
  } finally {
    clearInterval(timer);
  }
}

describe('event loop', () => {
  let receiver;
  const open = [];
  let db;

  function client(extra = {}) {
    db = path.join(tmpdir(), 'q.db');
    const h = new Herald({ ...FAST, db_path: db, destinations: [receiver.dest()], ...extra });
    open.push(h);
    return h;
  }

  before(async () => {
    receiver = await Receiver.start();
  });
  after(async () => {
    await receiver.close();
  });
  afterEach(async () => {
    while (open.length) await open.pop().close(0);
    receiver.events.length = 0;
    receiver.requests.length = 0;
  });

  test('track() returns in microseconds, with no network on the caller', async () => {
    // Every request takes 1 s to be answered: a track() that waited on the
    // network would take at least that.
    // A receiver of its own: its delayed answers must not reach other tests.
    const slow = await Receiver.start();
    await slow.script(Array.from({ length: 20 }, () => [null, {}, '', 1.0]));
    const h = new Herald({ ...FAST, db_path: path.join(tmpdir(), 'q.db'), destinations: [slow.dest()],
      flush_interval_ms: 0, batch_max_events: 10 });
    const times = [];
    for (let i = 0; i < 500; i++) {
      const t0 = process.hrtime.bigint();
      h.track('Timed', { i, plan: 'pro', seats: 12, ok: true });
      times.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    times.sort((a, b) => a - b);
    const median = times[times.length >> 1];
    const p99 = times[Math.floor(times.length * 0.99)];
    console.log(`track(): median ${median.toFixed(1)} µs, p99 ${p99.toFixed(1)} µs, max ${times.at(-1).toFixed(1)} µs`);
    assert.ok(median < 2000, `median ${median} µs`);
    assert.ok(times.at(-1) < 500000, `slowest ${times.at(-1)} µs`);
    assert.equal(h.stats().accepted, 500);
    await h.close(0);
    await slow.close();
  });

  test('flush() with the receiver down resolves false after the timeout; the loop keeps ticking', async () => {
    await receiver.stop();
    const h = client({ retry_base_ms: 100, retry_max_delay_ms: 200 });
    h.track('Waiting', { k: 'v' });
    const { result, elapsed, ticks, gap } = await ticking(() => h.flush(1500));
    console.log(`flush(1500) -> ${result} after ${elapsed.toFixed(0)} ms; ${ticks} ticks, largest gap ${gap.toFixed(1)} ms`);
    assert.equal(result, false);
    assert.ok(elapsed >= 1400 && elapsed < 4000, `${elapsed} ms`);
    assert.ok(ticks >= 60, `only ${ticks} ticks of a 10 ms interval in ${elapsed} ms`);
    assert.ok(gap < 250, `the event loop stalled for ${gap} ms`);
    assert.equal(h.stats().pending, 1);
    await receiver.start();
    assert.equal(await h.flush(15000), true);
    assert.ok(await receiver.waitForEvents(1));
    assert.deepEqual(receiver.events.map((e) => e.event), ['Waiting']);
  });

  test('a slow receiver: flush() waits, timers and fs keep working, concurrent flushes share', async () => {
    await receiver.script([[null, {}, '', 1.5]]);
    const h = client();
    for (let i = 0; i < 50; i++) h.track('Slow', { i });
    const { result, elapsed, ticks, gap } = await ticking(async () => {
      const flushes = [h.flush(10000), h.flush(10000), h.flush(10000), h.flush(10000), h.flush(10000)];
      // The libuv pool is not exhausted by the waiting flushes.
      const t0 = performance.now();
      await fs.promises.readFile(__filename);
      const fsMs = performance.now() - t0;
      const results = await Promise.all(flushes.map((f) => f.then((r) => [r, h.stats().sent])));
      return { results, fsMs };
    });
    console.log(`5 flushes -> ${JSON.stringify(result.results)} after ${elapsed.toFixed(0)} ms; fs read took ${result.fsMs.toFixed(1)} ms; ${ticks} ticks, gap ${gap.toFixed(1)} ms`);
    for (const [r, sent] of result.results) {
      assert.equal(r, true);
      assert.equal(sent, 50, 'a flush resolved true before everything was delivered');
    }
    assert.ok(elapsed >= 1300, `${elapsed} ms: the receiver delayed its answer 1.5 s`);
    assert.ok(result.fsMs < 500, `fs.readFile took ${result.fsMs} ms during the flushes`);
    assert.ok(gap < 250, `the event loop stalled for ${gap} ms`);
    assert.ok(await receiver.waitForEvents(50));
  });

  test('a flush() only answers for events tracked before it', async () => {
    await receiver.script([[null, {}, '', 0.5]]);
    const h = client({ flush_interval_ms: 10000 });
    h.track('First');
    const first = h.flush(10000);
    await new Promise((r) => setTimeout(r, 50));
    h.track('Second');
    const second = h.flush(10000).then((r) => [r, h.stats().sent]);
    assert.equal(await first, true);
    assert.deepEqual(await second, [true, 2]);
  });

  test('close() waits for a flush in progress; later calls are refused', async () => {
    await receiver.stop();
    const h = client();
    h.track('Kept');
    const t0 = performance.now();
    const f = h.flush(800);
    const c = h.close(0);
    assert.throws(() => h.track('Too Late'), (e) => e.code === 'HERALD_E_CLOSED');
    await assert.rejects(h.flush(10), (e) => e.code === 'HERALD_E_CLOSED');
    assert.equal(await f, false);
    assert.equal(await c, false, 'the event stays on disk');
    assert.ok(performance.now() - t0 >= 700);
    await receiver.start();
    const h2 = new Herald({ ...FAST, db_path: db, destinations: [receiver.dest()] });
    open.push(h2);
    assert.equal(await h2.flush(15000), true);
    assert.ok(await receiver.waitForEvents(1));
    assert.deepEqual(receiver.events.map((e) => e.event), ['Kept']);
  });

  test('flush(Infinity) waits until the receiver comes back', async () => {
    await receiver.stop();
    const h = client({ retry_base_ms: 50, retry_max_delay_ms: 100 });
    h.track('Eventually');
    setTimeout(() => receiver.start(), 600);
    const { result, elapsed } = await ticking(() => h.flush(Infinity));
    assert.equal(result, true);
    assert.ok(elapsed >= 500);
  });

  test('close() delivers within its timeout', async () => {
    const h = client({ flush_interval_ms: 60000 });
    h.track('On Close');
    assert.equal(await h.close(10000), true);
    assert.ok(await receiver.waitForEvents(1));
    assert.equal(receiver.events[0].event, 'On Close');
  });
});
