'use strict';

// Child process of kill.test.js: opens a client with the options in argv[2]
// and tracks {"seq": i} from argv[3] on, for ever, writing "ok <seq>" to
// stdout (synchronously) after each call that returned: the event is durable
// from then on. The parent SIGKILLs it mid-stream.

const fs = require('node:fs');
const { Herald } = require('..');

const h = new Herald(JSON.parse(process.argv[2]));
let seq = Number(process.argv[3] || 0);
for (;;) {
  h.track('Kill Test', { seq, pad: 'p'.repeat(32) });
  fs.writeSync(1, `ok ${seq}\n`);
  seq++;
}
