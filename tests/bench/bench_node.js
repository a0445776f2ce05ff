'use strict';

// The Node binding's side of tests/bench/bindings.sh: times N
// h.track('Bench Event', PROPS) calls with the same 8-property event as
// bench_track.c, one fresh queue file per run, delivery off unless --url.
// Prints one line per run and "RESULT node calls_per_s=<n> us_per_call=<x>"
// (the median). The library comes from --library or HERALD_LIBRARY.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Herald, libraryVersion } = require('../../bindings/node');

const PROPS = { plan: 'pro', seats: 12, price: 99.5, trial: false, source: 'bench', region: 'eu-west-1', tier: 3, ratio: 0.25 };

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

async function main() {
  const count = Number(arg('count', 20000));
  const runs = Number(arg('runs', 5));
  const url = arg('url', null);
  const durability = arg('durability', 'process');
  const library = arg('library', undefined);
  console.log(`bench_node: herald ${libraryVersion(library)}, ${count} calls x ${runs} runs, 8 properties, deliver=${url || 'off'}, durability=${durability}`);
  const rates = [];
  for (let r = 0; r < runs; r++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-bench-'));
    const opts = { library, db_path: path.join(dir, 'q.db'), durability };
    if (url) opts.destinations = [{ name: 'sink', url }];
    else opts.deliver = false;
    const h = new Herald(opts);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) h.track('Bench Event', PROPS);
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    await h.close(0);
    fs.rmSync(dir, { recursive: true, force: true });
    rates.push(count / elapsed);
    console.log(`run ${r + 1}: ${count} calls in ${elapsed.toFixed(3)} s: ${rates.at(-1).toFixed(0)} calls/s, ${(1e6 / rates.at(-1)).toFixed(2)} us/call`);
  }
  rates.sort((a, b) => a - b);
  const m = rates.length % 2 ? rates[rates.length >> 1] : (rates[rates.length / 2 - 1] + rates[rates.length / 2]) / 2;
  console.log(`RESULT node calls_per_s=${m.toFixed(0)} us_per_call=${(1e6 / m).toFixed(2)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
