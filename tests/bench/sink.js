#!/usr/bin/env node
// A loopback sink for the benchmarks: accepts the batches of herald and of the
// peer SDKs, counts the distinct events it received and the bytes on the wire,
// and answers 200. Node, no dependencies.
//
//   node tests/bench/sink.js [--port P] [--host 127.0.0.1] [--port-file FILE]
//
// Prints "sink listening on http://HOST:PORT" on stdout once bound (--port 0,
// the default, picks a free port; --port-file also writes the port number to
// FILE). Stops on SIGTERM/SIGINT.
//
// Requests:
//   POST <any other path>  a batch: Segment and RudderStack /v1/batch, PostHog
//                          /batch/, herald's rest/segment/posthog backends.
//                          Content-Encoding: gzip bodies are gunzipped.
//                          Answers 200 {"success":true,"status":1} (after
//                          delay_ms, with `status` if configured, see /config).
//   GET  /stats            {"distinct", "total_events", "requests",
//                           "body_bytes", "raw_bytes", "header_bytes",
//                           "wire_bytes", "wire_bytes_out", "gzip_requests",
//                           "max_seq", "first_ms", "last_ms", "bad_requests"}
//   POST /reset            zeroes every counter (answers the zeroed stats)
//   POST /config           JSON {"delay_ms": n, "status": code}: answer every
//                          later batch after n ms, with that status (default 0
//                          and 200); /reset does not change it.
//
// Counting. An event is recognised by its properties' "seq" member, the
// sequence number every benchmark client gives its events (0..N-1). The sink
// does not JSON.parse the bodies: it scans the (gunzipped) bytes for the
// token `"seq":` and reads the integer after it. That is several times
// cheaper than a parse per request, and the sink shares the machine's cores
// with the client it measures. It is exact for the benchmarks' events: the
// only member named "seq" in any of the four clients' bodies is the one the
// benchmark sets (herald's context.session has "sequence", which does not
// match, since the token includes the closing quote and the colon). A string
// value containing `"seq":` would be miscounted; the benchmark events have
// none.
//   total_events  every `"seq":` seen (a retried batch counts again)
//   distinct      distinct seq values seen since /reset (a bitmap)
//   body_bytes    request bodies as received: after gzip, before gunzip
//   raw_bytes     the same bodies after gunzip
//   header_bytes  request line + headers of each request, rebuilt from what
//                 Node parsed (exact for HTTP/1.1 as the clients send it)
//   wire_bytes    bytes read from the clients' TCP connections (socket
//                 bytesRead): headers, bodies and chunk framing, i.e. the
//                 bytes on the wire above TCP; wire_bytes_out the same for
//                 the responses
//   first_ms/last_ms  wall clock (ms) of the first and the last batch
'use strict';

const http = require('http');
const zlib = require('zlib');
const fs = require('fs');

const args = process.argv.slice(2);
let port = 0;
let host = '127.0.0.1';
let portFile = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const v = args[i + 1];
  if (a === '--port' && v !== undefined) { port = Number(v); i++; }
  else if (a === '--host' && v !== undefined) { host = v; i++; }
  else if (a === '--port-file' && v !== undefined) { portFile = v; i++; }
  else {
    process.stderr.write('usage: node sink.js [--port P] [--host H] [--port-file FILE]\n');
    process.exit(2);
  }
}

const MAX_SEQ = 1 << 28; // bitmap bound: 32 MiB at most
const TOKEN = Buffer.from('"seq":');

let bitmap = new Uint8Array(1 << 14);
let st;
let delayMs = 0;
let answerStatus = 200;
let wireBase = 0;
let wireOutBase = 0;
let closedRead = 0;
let closedWritten = 0;
const sockets = new Set();

function zero() {
  bitmap = new Uint8Array(1 << 14);
  st = {
    distinct: 0, total_events: 0, requests: 0, body_bytes: 0, raw_bytes: 0,
    header_bytes: 0, gzip_requests: 0, bad_requests: 0, max_seq: -1,
    first_ms: 0, last_ms: 0,
  };
  wireBase = wireIn();
  wireOutBase = wireOut();
}

function wireIn() {
  let n = closedRead;
  for (const s of sockets) n += s.bytesRead;
  return n;
}

function wireOut() {
  let n = closedWritten;
  for (const s of sockets) n += s.bytesWritten;
  return n;
}

function stats() {
  return Object.assign({}, st, {
    wire_bytes: wireIn() - wireBase,
    wire_bytes_out: wireOut() - wireOutBase,
  });
}

function mark(seq) {
  if (seq < 0 || seq >= MAX_SEQ) return;
  const byte = seq >>> 3;
  if (byte >= bitmap.length) {
    let n = bitmap.length;
    while (n <= byte) n *= 2;
    const grown = new Uint8Array(n);
    grown.set(bitmap);
    bitmap = grown;
  }
  const bit = 1 << (seq & 7);
  if ((bitmap[byte] & bit) === 0) {
    bitmap[byte] |= bit;
    st.distinct++;
  }
  if (seq > st.max_seq) st.max_seq = seq;
}

// Count the `"seq":<int>` tokens of a body.
function scan(buf) {
  let pos = buf.indexOf(TOKEN, 0);
  while (pos !== -1) {
    let i = pos + TOKEN.length;
    while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
    let n = 0;
    let digits = 0;
    while (i < buf.length && buf[i] >= 0x30 && buf[i] <= 0x39 && digits < 10) {
      n = n * 10 + (buf[i] - 0x30);
      i++;
      digits++;
    }
    if (digits > 0) {
      st.total_events++;
      mark(n);
    }
    pos = buf.indexOf(TOKEN, i);
  }
}

function headerBytes(req) {
  // "POST /v1/batch HTTP/1.1\r\n" + "Name: value\r\n"... + "\r\n"
  let n = req.method.length + 1 + req.url.length + 1 + 8 + 2 + 2;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) n += raw[i].length + 2 + Buffer.byteLength(raw[i + 1]) + 2;
  return n;
}

function send(res, status, body) {
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

const OK_BODY = '{"success":true,"status":1}';

const server = http.createServer((req, res) => {
  const url = req.url;
  if (req.method === 'GET' && url.startsWith('/stats')) {
    req.resume();
    send(res, 200, JSON.stringify(stats()));
    return;
  }
  const chunks = [];
  let len = 0;
  req.on('data', (c) => { chunks.push(c); len += c.length; });
  req.on('end', () => {
    if (req.method === 'POST' && url === '/reset') {
      zero();
      send(res, 200, JSON.stringify(stats()));
      return;
    }
    if (req.method === 'POST' && url === '/config') {
      try {
        const cfg = JSON.parse(Buffer.concat(chunks, len).toString() || '{}');
        if (typeof cfg.delay_ms === 'number') delayMs = cfg.delay_ms;
        if (typeof cfg.status === 'number') answerStatus = cfg.status;
        send(res, 200, JSON.stringify({ delay_ms: delayMs, status: answerStatus }));
      } catch (e) {
        send(res, 400, JSON.stringify({ error: String(e.message) }));
      }
      return;
    }
    if (req.method !== 'POST') {
      send(res, 405, '{"error":"POST a batch, GET /stats or POST /reset"}');
      return;
    }
    const now = Date.now();
    if (st.requests === 0) st.first_ms = now;
    st.last_ms = now;
    st.requests++;
    st.body_bytes += len;
    st.header_bytes += headerBytes(req);
    let body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, len);
    const enc = req.headers['content-encoding'];
    if (enc === 'gzip') {
      st.gzip_requests++;
      try {
        body = zlib.gunzipSync(body);
      } catch (e) {
        st.bad_requests++;
        send(res, 400, '{"error":"bad gzip"}');
        return;
      }
    }
    st.raw_bytes += body.length;
    if (answerStatus >= 200 && answerStatus < 300) scan(body);
    if (delayMs > 0) setTimeout(() => send(res, answerStatus, OK_BODY), delayMs);
    else send(res, answerStatus, OK_BODY);
  });
});

server.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => {
    closedRead += s.bytesRead;
    closedWritten += s.bytesWritten;
    sockets.delete(s);
  });
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 130000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;

zero();
server.listen(port, host, () => {
  const p = server.address().port;
  if (portFile) fs.writeFileSync(portFile, String(p) + '\n');
  process.stdout.write(`sink listening on http://${host}:${p}\n`);
});

function stop() {
  server.close();
  for (const s of sockets) s.destroy();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
