// A headless Debian chromium driven by playwright-core, commanded one JSON
// line at a time on stdin, answering one JSON line per command on stdout, so
// its Python side (demo/browser.py, used by the integration tests and by
// `framelog demo`) can interleave browser steps with the stack's (stopping an
// edge, purging a cache, querying ClickHouse).
//
//   {"op": "goto", "url": "..."}                       -> {"ok": true}
//   {"op": "eval", "expr": "js expression"}            -> {"ok": true, "value": ...}
//   {"op": "wait", "expr": "...", "timeout_ms": 30000} -> value once truthy, else ok: false
//   {"op": "throttle", "download_bps": n, "upload_bps": n, "latency_ms": n}   (0 bps: unthrottled)
//   {"op": "block", "pattern": "**/v1/keys/**"}         requests matching the glob fail (connection refused)
//   {"op": "delay", "pattern": "**/480p/*.ts", "ms": n}  requests matching the glob leave n ms late
//   {"op": "screenshot", "path": "/tmp/x.png", "selector": "#video"}
//   {"op": "files", "selector": "input[type=file]", "paths": ["/tmp/a.mp4"]}   choose files in a file input
//   {"op": "log"}                                      -> console messages and page errors so far
//   {"op": "close"}
// CHROMIUM overrides the browser (default /usr/bin/chromium).
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--autoplay-policy=no-user-gesture-required', '--mute-audio'],
});
const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
const page = await context.newPage();
const cdp = await context.newCDPSession(page);
const log = [];
page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
page.on('requestfailed', (r) => log.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));

async function run(cmd) {
  switch (cmd.op) {
    case 'goto':
      await page.goto(cmd.url, { waitUntil: 'domcontentloaded', timeout: cmd.timeout_ms ?? 30000 });
      return null;
    case 'eval':
      return page.evaluate(cmd.expr);
    case 'wait': {
      const handle = await page.waitForFunction(cmd.expr, null, { timeout: cmd.timeout_ms ?? 30000, polling: 100 });
      return handle.jsonValue();
    }
    case 'throttle': {
      const bps = (v) => (v > 0 ? v / 8 : -1);   // CDP wants bytes per second, -1 for no limit
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false, latency: cmd.latency_ms ?? 0,
        downloadThroughput: bps(cmd.download_bps ?? 0), uploadThroughput: bps(cmd.upload_bps ?? 0),
      });
      return null;
    }
    case 'block':
      await page.route(cmd.pattern, (route) => route.abort('connectionrefused'));
      return null;
    case 'delay':
      // a slow origin for some requests only (a change of emulated network conditions
      // mid-request is not applied to it: chromium hands over what it already holds)
      await page.route(cmd.pattern, async (route) => {
        await new Promise((resolve) => setTimeout(resolve, cmd.ms));
        try {
          await route.continue();
        } catch {
          // the page gave up on the request meanwhile (an abandoned fragment)
        }
      });
      return null;
    case 'screenshot': {
      const target = cmd.selector ? page.locator(cmd.selector) : page;
      await target.screenshot({ path: cmd.path, timeout: cmd.timeout_ms ?? 30000 });
      return cmd.path;
    }
    case 'files':
      await page.locator(cmd.selector).first().setInputFiles(cmd.paths, { timeout: cmd.timeout_ms ?? 30000 });
      return null;
    case 'log':
      return log.slice();
    case 'close':
      await browser.close();
      return null;
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ ok: true, ready: true, version: browser.version() }) + '\n');
for await (const line of lines) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
    const value = await run(cmd);
    process.stdout.write(JSON.stringify({ ok: true, value: value ?? null }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message || err) }) + '\n');
  }
  if (cmd && cmd.op === 'close') break;
}
await browser.close().catch(() => {});
process.exit(0);
