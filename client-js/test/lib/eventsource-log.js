// Follows one stream with the npm `eventsource` package, a spec-following
// EventSource like a browser's (an error status or another Content-Type
// closes it for good; a network error makes it reconnect, with
// Last-Event-ID), and prints what it sees as JSON lines on stdout:
//   {"kind":"open"}
//   {"kind":"event","event":"put","id":"7","data":"{...}"}
//   {"kind":"error","message":"...","code":502,"readyState":0}   (2: CLOSED)
// cmd/sigbase/proxy_outage_test.go runs it through nginx and Caddy, and
// ends it with SIGTERM; it exits by itself after the time limit (60 s by
// default).
// Usage: node eventsource-log.js URL [limit-seconds]
import { EventSource } from 'eventsource';

const [url, limit = '60'] = process.argv.slice(2);
const start = performance.now();
const print = (line) => process.stdout.write(`${JSON.stringify({ ...line, ms: Math.round(performance.now() - start) })}\n`);

const es = new EventSource(url);
es.onopen = () => print({ kind: 'open' });
es.onerror = (err) => print({ kind: 'error', message: String(err.message ?? ''), code: err.code ?? null, readyState: es.readyState });
for (const name of ['put', 'patch', 'cancel', 'auth_revoked', 'message']) {
  es.addEventListener(name, (ev) => print({ kind: 'event', event: name, id: ev.lastEventId, data: ev.data }));
}

setTimeout(() => { es.close(); process.exit(0); }, Number(limit) * 1000);
