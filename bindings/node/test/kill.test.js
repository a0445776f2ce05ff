'use strict';

// kill -9 of a Node process mid-stream loses nothing it accepted.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');

const { FAST, Receiver, tmpdir } = require('./helpers');
const { Herald } = require('..');

describe('durability', () => {
  let receiver;
  before(async () => {
    receiver = await Receiver.start();
  });
  after(async () => {
    await receiver.close();
  });

  test('SIGKILL mid-stream loses no accepted event', async () => {
    const seed = Number(process.env.HERALD_TEST_SEED || (Date.now() % 2 ** 32));
    let state = seed;
    const rand = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    console.log(`seed ${seed} (set HERALD_TEST_SEED to replay)`);
    const cfg = { ...FAST, db_path: path.join(tmpdir(), 'kill.db'), destinations: [receiver.dest()] };
    const accepted = new Set();
    const maybe = new Set();
    for (let run = 0; run < 3; run++) {
      const start = run * 1000000;
      const child = spawn(process.execPath, [path.join(__dirname, 'kill_child.js'), JSON.stringify(cfg), String(start)],
        { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
      let out = '';
      let err = '';
      let enough;
      const gotSome = new Promise((r) => { enough = r; });
      child.stdout.on('data', (d) => {
        out += d;
        if (out.length > 200 * 10) enough();
      });
      child.stderr.on('data', (d) => { err += d; });
      const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
      const t = setTimeout(enough, 30000);
      await gotSome;
      clearTimeout(t);
      await new Promise((r) => setTimeout(r, 50 + rand() * 250));
      child.kill('SIGKILL');
      const { signal } = await exited;
      assert.equal(signal, 'SIGKILL', `run ${run} ended on its own: ${err}`);
      const lines = out.split('\n');
      lines.pop(); // a last line without \n may be cut
      const ok = lines.filter((l) => l.startsWith('ok ')).map((l) => Number(l.slice(3)));
      assert.ok(ok.length >= 100, `run ${run}: only ${ok.length} oks; stderr: ${err}`);
      ok.forEach((s, i) => assert.equal(s, start + i, `run ${run}: seqs not contiguous`));
      console.log(`run ${run}: ${ok.length} calls returned before the kill`);
      for (const s of ok) accepted.add(s);
      maybe.add(start + ok.length);
      // Reopen the same file in this process and deliver what is left.
      const h = new Herald(cfg);
      const drained = await h.flush(30000);
      const stats = h.stats();
      await h.close(0);
      assert.equal(drained, true, `run ${run}: reopen + flush did not drain: ${JSON.stringify(stats)}`);
    }
    // Every accepted seq must arrive (the bridge reports asynchronously).
    const arrived = () => new Set(receiver.events.map((e) => e.properties.seq));
    const deadline = Date.now() + 10000;
    const missing = () => {
      const got = arrived(); // once per check: accepted can hold 100,000 seqs
      return [...accepted].some((s) => !got.has(s));
    };
    while (missing() && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const got = arrived();
    const lost = [...accepted].filter((s) => !got.has(s));
    const ghosts = [...got].filter((s) => !accepted.has(s) && !maybe.has(s));
    console.log(`accepted ${accepted.size}, arrived ${got.size} distinct, ${receiver.events.length} events in all`);
    assert.ok(accepted.size >= 300);
    assert.deepEqual(lost.slice(0, 20), [], `${lost.length} accepted events never arrived`);
    assert.deepEqual(ghosts.slice(0, 20), []);
  });
});
