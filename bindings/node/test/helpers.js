'use strict';

/*
 * Shared helpers of the Node tests. The tests drive the real shared library
 * of a meson build: HERALD_LIBRARY is set to $HERALD_BUILD_DIR/libherald.so
 * (HERALD_BUILD_DIR defaults to "build", relative to the repository root).
 * Events go to the validating loopback receiver of examples/receiver.py,
 * run through test/receiver_bridge.py by Debian's /usr/bin/python3
 * (HERALD_PYTHON overrides).
 */

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BUILD_DIR = path.resolve(REPO, process.env.HERALD_BUILD_DIR || 'build');
const LIBRARY = path.join(BUILD_DIR, 'libherald.so');
process.env.HERALD_LIBRARY = LIBRARY;
const PYTHON = process.env.HERALD_PYTHON || '/usr/bin/python3';

if (!fs.existsSync(LIBRARY)) {
  throw new Error(`libherald.so not found at ${LIBRARY}: build it first (meson setup ${BUILD_DIR} && ninja -C ${BUILD_DIR}), or point HERALD_BUILD_DIR at a build directory`);
}

const FAST = Object.freeze({
  flush_interval_ms: 50,
  retry_base_ms: 50,
  retry_max_delay_ms: 500,
  connect_timeout_ms: 2000,
  request_timeout_ms: 10000,
});

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'herald-node-'));
}

class Receiver {
  constructor() {
    this.requests = [];
    this.events = [];
    this.port = null;
    this._waiters = [];
    this._proc = null;
  }

  static async start() {
    const r = new Receiver();
    await r._spawn();
    return r;
  }

  _spawn() {
    return new Promise((resolve, reject) => {
      const p = spawn(PYTHON, [path.join(__dirname, 'receiver_bridge.py')], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      this._proc = p;
      p.on('error', reject);
      const rl = readline.createInterface({ input: p.stdout });
      rl.on('line', (line) => {
        const msg = JSON.parse(line);
        if (msg.kind === 'listening') {
          this.port = msg.port;
          resolve();
        } else if (msg.kind === 'request') {
          this.requests.push(msg);
          if (msg.messages) this.events.push(...msg.messages);
        }
        const waiters = this._waiters;
        this._waiters = [];
        for (const w of waiters) w(msg);
      });
      p.on('exit', (code) => {
        if (this.port === null) reject(new Error(`receiver bridge exited with ${code}`));
      });
    });
  }

  _next(kind) {
    return new Promise((resolve) => {
      const w = (msg) => (msg.kind === kind ? resolve(msg) : this._waiters.push(w));
      this._waiters.push(w);
    });
  }

  url(p = '/v1/batch') {
    return `http://127.0.0.1:${this.port}${p}`;
  }

  dest(name = 'main', extra = {}) {
    return { name, backend: 'rest', url: this.url(), mode: 'batch', ...extra };
  }

  /** Stop listening: connections are refused until start(). */
  async stop() {
    const done = this._next('stopped');
    this._proc.stdin.write('stop\n');
    await done;
  }

  async start() {
    const done = this._next('started');
    this._proc.stdin.write('start\n');
    await done;
  }

  async script(items) {
    const done = this._next('scripted');
    this._proc.stdin.write(`script ${JSON.stringify(items)}\n`);
    await done;
  }

  async waitForEvents(n, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length < n && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.events.length >= n;
  }

  async close() {
    if (!this._proc) return;
    const p = this._proc;
    this._proc = null;
    const exited = new Promise((r) => p.once('exit', r));
    p.stdin.end('quit\n');
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

module.exports = { REPO, LIBRARY, FAST, PYTHON, Receiver, tmpdir };
