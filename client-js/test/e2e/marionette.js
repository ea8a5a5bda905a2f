// Firefox ESR driven over Marionette, its own remote protocol (Playwright
// drives stock Firefox only over a WebDriver BiDi newer than ESR speaks).
// Just enough of it: a session, navigate, and scripts.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { waitFor } from '../lib/wait.js';

export const firefoxBin = process.env.FIREFOX_BIN ?? '/usr/bin/firefox-esr';

// Fake camera and microphone, allowed without a prompt: a page without
// camera permission gets only the default route's address as ICE host
// candidate, and the loopback-only namespace has no default route. ICE on
// loopback with plain addresses (no mDNS names); nothing fetched from anywhere.
const PREFS = {
  'marionette.port': 0,
  'media.navigator.streams.fake': true,
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  'media.autoplay.default': 0,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'app.update.enabled': false,
  'browser.shell.checkDefaultBrowser': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.proxy.type': 0,
  'network.connectivity-service.enabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'extensions.update.enabled': false,
  'browser.startup.homepage_override.mstone': 'ignore',
};

/** Starts headless Firefox with Marionette; quit when the test ends. */
export async function launchFirefox(t) {
  const profile = mkdtempSync(join(tmpdir(), 'sigbase-firefox-'));
  const userJS = Object.entries(PREFS).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join('\n');
  writeFileSync(join(profile, 'user.js'), `${userJS}\n`);
  const proc = spawn(firefoxBin, ['--headless', '--marionette', '--no-remote', '--profile', profile, 'about:blank'], {
    stdio: 'ignore',
    env: { ...process.env, HOME: profile, MOZ_CRASHREPORTER_DISABLE: '1' },
  });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  t.after(async () => {
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    rmSync(profile, { recursive: true, force: true });
  });
  const portFile = join(profile, 'MarionetteActivePort');
  await waitFor(() => existsSync(portFile) && readFileSync(portFile, 'utf8').trim(), 'Marionette to listen', 30_000);
  const client = await connectMarionette(Number(readFileSync(portFile, 'utf8')));
  t.after(() => client.close());
  await client.send('WebDriver:NewSession', { capabilities: { alwaysMatch: { acceptInsecureCerts: true } } });
  return client;
}

// Messages are "<length>:<json>"; commands [0, id, name, params], answers [1, id, error, result].
async function connectMarionette(port) {
  const socket = net.connect(port, '127.0.0.1');
  let buffer = Buffer.alloc(0);
  let nextId = 1;
  const waiting = new Map();
  let hello;
  const helloSeen = new Promise((resolve) => { hello = resolve; });
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      const colon = buffer.indexOf(':');
      if (colon < 0) return;
      const len = Number(buffer.subarray(0, colon).toString());
      if (buffer.length < colon + 1 + len) return;
      const msg = JSON.parse(buffer.subarray(colon + 1, colon + 1 + len).toString());
      buffer = buffer.subarray(colon + 1 + len);
      if (!Array.isArray(msg)) { hello(msg); continue; }
      const [, id, error, result] = msg;
      const w = waiting.get(id);
      waiting.delete(id);
      if (error) w?.reject(new Error(`marionette: ${error.error}: ${error.message}`));
      else w?.resolve(result);
    }
  });
  socket.on('error', (err) => { for (const w of waiting.values()) w.reject(err); });
  await helloSeen;
  return {
    send(name, params = {}, timeoutMs = 30_000) {
      const id = nextId++;
      const body = Buffer.from(JSON.stringify([0, id, name, params]));
      socket.write(`${body.length}:`);
      socket.write(body);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiting.delete(id); reject(new Error(`marionette: ${name} timed out`)); }, timeoutMs);
        waiting.set(id, {
          resolve: (v) => { clearTimeout(timer); resolve(v); },
          reject: (e) => { clearTimeout(timer); reject(e); },
        });
      });
    },
    navigate(url) { return this.send('WebDriver:Navigate', { url }); },
    /** Runs a function body (with `return`) in the page; resolves to its value. */
    async run(script, args = []) {
      return (await this.send('WebDriver:ExecuteScript', { script, args })).value;
    },
    close() { socket.destroy(); },
  };
}
