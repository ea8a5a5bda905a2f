// The real sigbase binary, started on 127.0.0.1 for a test.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let builtBinary;

/** SIGBASE_BIN, or the binary built once per test process from ../cmd/sigbase. */
export function sigbaseBinary() {
  if (process.env.SIGBASE_BIN) return process.env.SIGBASE_BIN;
  if (!builtBinary) {
    const dir = mkdtempSync(join(tmpdir(), 'sigbase-bin-'));
    builtBinary = join(dir, 'sigbase');
    execFileSync('go', ['build', '-o', builtBinary, './cmd/sigbase'], { cwd: repoRoot, stdio: 'inherit', timeout: 300_000 });
  }
  return builtBinary;
}

/** A fresh directory for a database, removed by cleanup(). */
export function tempDir(t, prefix = 'sigbase-test-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts `sigbase serve` and resolves once it prints its listening line
 * (http or, with --tls-*, https). addr defaults to 127.0.0.1:0; pass the same
 * addr and data to restart. stdout holds everything it printed (the
 * self-signed certificate's fingerprint is its second line).
 */
export async function startServer({ data, addr = '127.0.0.1:0', args = [], timeoutMs = 15_000 }) {
  const proc = spawn(sigbaseBinary(), ['serve', '--addr', addr, '--data', data, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  let out = '';
  proc.stderr.on('data', (b) => { log += b; });
  proc.stdout.on('data', (b) => { out += b; });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`sigbase did not start in ${timeoutMs} ms: ${log}`)), timeoutMs);
    const fail = (err) => { clearTimeout(timer); proc.kill('SIGKILL'); reject(err); };
    proc.stdout.on('data', () => {
      const m = /listening on (https?:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.once('exit', (code) => fail(new Error(`sigbase exited with ${code} before listening: ${log}`)));
  });
  return {
    url,
    addr: new URL(url).host,
    data,
    get log() { return log; },
    get stdout() { return out; },
    /** SIGTERM (graceful: streams get cancel), SIGKILL after timeoutMs. */
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

/** A server for one test, stopped when the test ends. */
export async function serverFor(t, args = []) {
  const srv = await startServer({ data: join(tempDir(t), 'db'), args });
  t.after(() => srv.stop());
  return srv;
}

/**
 * Reads one sample of a Prometheus metric (first line matching name and
 * labels). With auth on, pass a token for room "*".
 */
export async function metric(url, name, labels = '', token = undefined) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const res = await fetch(`${url}/metrics`, { headers });
  if (!res.ok) throw new Error(`/metrics: HTTP ${res.status}`);
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{` : `${name} `) && l.includes(labels));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

/** Mints a token with `sigbase token` (the binary's own command). */
export function mintToken(secret, { room, perm = 'read,write', ttl = '1h' }) {
  const args = ['token', '--auth-secret', secret, '--room', room, '--perm', perm, '--ttl', ttl];
  return new Promise((resolve, reject) => {
    execFile(sigbaseBinary(), args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`sigbase token: ${err.message}: ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}
