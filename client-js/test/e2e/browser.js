// Debian's Chromium driven by playwright-core, on the demo page, inside the
// loopback-only network namespace that run-e2e.sh makes.
import { mkdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const screenshotDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'screenshots');

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Refuses to run where WebRTC could reach anything but loopback. */
export function assertLoopbackOnly() {
  const names = Object.keys(networkInterfaces());
  if (names.some((n) => n !== 'lo')) {
    throw new Error(`browser tests run only in a loopback-only network namespace (found ${names}): use test/run-e2e.sh`);
  }
}

/** Starts Chromium, with extra flags if given; closed when the test ends. */
export async function launch(t, extraFlags = []) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    args: [...FLAGS, ...extraFlags],
    headless: true,
    timeout: 30_000,
  });
  t.after(() => browser.close());
  return browser;
}

/**
 * Opens url in a fresh context (its own storage, like another person) and
 * collects page errors, which fail the test, and console lines for failures.
 * The browser's close ends it: launch the browser before starting servers,
 * so that it goes first (t.after hooks run in order).
 */
export async function openPage(browser, url, name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 820 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.console = [];
  page.errors = [];
  page.on('console', (m) => {
    page.console.push(`[${name}] ${m.type()}: ${m.text()}`);
    if (m.type() === 'error') page.errors.push(`[${name}] console: ${m.text()}`); // CSP violations land here
  });
  page.on('pageerror', (e) => page.errors.push(`[${name}] ${e.message}`));
  await page.goto(url, { waitUntil: 'load' });
  return page;
}

/** The room the page is in, once it has one. */
export async function roomName(page) {
  const handle = await page.waitForFunction(() => window.sigbaseDemo.room?.name);
  return handle.jsonValue();
}

/** Milliseconds from page load to data-channel open and first remote frame. */
export async function timings(page) {
  await page.waitForFunction(() => window.sigbaseDemo.marks.channelOpen !== undefined && window.sigbaseDemo.marks.firstFrame !== undefined);
  return page.evaluate(() => ({ ...window.sigbaseDemo.marks }));
}

/** Waits for the remote video to have a size and a clock that moves. */
export async function expectPlayingRemoteVideo(page) {
  await page.waitForFunction(() => document.getElementById('remote').videoWidth > 0);
  const t0 = await page.$eval('#remote', (v) => v.currentTime);
  await page.waitForFunction((start) => document.getElementById('remote').currentTime > start + 0.5, t0);
  return page.$eval('#remote', (v) => ({ width: v.videoWidth, height: v.videoHeight }));
}

/** Sends text on the page's chat and waits for it in the other page's log. */
export async function chatAcross(from, to, text) {
  await from.fill('#chat-input', text);
  await from.click('#chat-send');
  await to.waitForFunction((t) => document.getElementById('chat-log').textContent.includes(t), text);
}

/** The type of the local candidate of the selected candidate pair. */
export function selectedLocalCandidateType(page) {
  return page.evaluate(async () => {
    const stats = await window.sigbaseDemo.call.pc.getStats();
    const all = [...stats.values()];
    const transport = all.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    const pair = transport
      ? stats.get(transport.selectedCandidatePairId)
      : all.find((s) => s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated);
    return pair ? stats.get(pair.localCandidateId)?.candidateType : undefined;
  });
}

export async function screenshot(page, file) {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, file), fullPage: true });
}

/** Asserts that no page threw. */
export function noPageErrors(...pages) {
  const errors = pages.flatMap((p) => p.errors);
  if (errors.length) throw new Error(`page errors:\n${errors.join('\n')}\nconsole:\n${pages.flatMap((p) => p.console).join('\n')}`);
}
