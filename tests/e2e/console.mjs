// Drives the pollwatch console in Debian's headless Chromium (playwright-core,
// no downloaded browser). Started by tests/console_e2e.rs, which runs the daemon
// and reads this script's stdout: a line "STEP <name>" asks it to act (e.g.
// feed an HJ 212 exceedance), a line "TIMING <json>" reports numbers, and the
// exit status is the verdict. Any console error or page error fails the run.
//
// Environment: PW_URL, PW_TOKEN (operator), PW_SCENARIO (live | load),
// PW_SHOTS (screenshot directory), PW_STEP_FILE (the Rust side creates it when
// the step it was asked for is done).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const url = process.env.PW_URL;
const token = process.env.PW_TOKEN;
const scenario = process.env.PW_SCENARIO || 'live';
const shots = process.env.PW_SHOTS;
const stepFile = process.env.PW_STEP_FILE;
if (!url || !token || !shots || !stepFile) {
  console.error('PW_URL, PW_TOKEN, PW_SHOTS and PW_STEP_FILE are required');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const problems = [];
const profile = mkdtempSync(join(tmpdir(), 'pw-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1400, height: 900 },
});

function watch(page) {
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()} (${page.url()})`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message} (${page.url()})`));
}

// Asks the Rust side to act and waits until it says it is done.
async function step(name, timeoutMs = 30000) {
  const done = `${stepFile}.${name}`;
  console.log(`STEP ${name} ${done}`);
  const until = Date.now() + timeoutMs;
  while (!existsSync(done)) {
    if (Date.now() > until) throw new Error(`step ${name}: no answer`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function login(page) {
  await page.goto(`${url}/login`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${url}/`), page.click('button[type=submit]')]);
  await page.waitForSelector('#board');
}

async function live(page) {
  await login(page);
  await page.waitForSelector('#live.ok', { timeout: 10000 });
  // A mark on the window: gone if the page reloads.
  await page.evaluate(() => { window.__noReload = true; });
  await page.screenshot({ path: join(shots, 'board-empty.png'), fullPage: true });
  await step('exceedance');
  const row = page.locator('tr[data-alert]', { hasText: '东山热电' });
  await row.first().waitFor({ timeout: 30000 });
  if (!(await page.evaluate(() => window.__noReload === true))) throw new Error('the board reloaded');
  const text = await row.first().innerText();
  for (const needle of ['41.2', '35', '超标', '1#锅炉烟囱']) {
    if (!text.includes(needle)) throw new Error(`board row lacks ${needle}: ${text}`);
  }
  await page.screenshot({ path: join(shots, 'board.png'), fullPage: true });
  console.log(`SHOT ${join(shots, 'board.png')}`);

  await Promise.all([page.waitForURL(/\/alerts\/\d+$/), row.first().locator('a').first().click()]);
  const detailPath = new URL(page.url()).pathname;
  // The console's script replaces the image with a message if it fails to load.
  await page.waitForFunction(() => {
    const i = document.getElementById('chart');
    return !i || i.complete;
  }, null, { timeout: 15000 });
  const width = await page.evaluate(() => document.getElementById('chart')?.naturalWidth ?? 0);
  if (!(width > 0)) throw new Error(`the evidence chart did not load (naturalWidth ${width})`);
  // The message as the officer's phone showed it.
  const told = await page.locator('p.told').innerText();
  if (!told.includes('二氧化硫 小时均值(折算) 41.2 mg/m³，限值 35')) throw new Error(`message: ${told}`);
  await page.fill('#note', '已电话联系企业环保负责人，正在核查');
  // A plain form post; the daemon answers with the alert page again.
  await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/act') && r.status() === 303),
    page.click('button[value=ack]'),
  ]);
  await page.waitForFunction(() => document.getElementById('alert-state')?.textContent === '已确认', null, { timeout: 10000 });
  const timeline = await page.locator('table.timeline').innerText();
  if (!timeline.includes('已电话联系企业环保负责人')) throw new Error(`note not in the timeline: ${timeline}`);
  if (!(await page.locator('#chain.ok').count())) throw new Error('hash chain not shown as intact');
  await page.screenshot({ path: join(shots, 'detail.png'), fullPage: true });
  console.log(`SHOT ${join(shots, 'detail.png')}`);
  // The enterprise behind it: its outlet is online now that its logger spoke.
  await page.click('dl.facts a');
  await page.waitForSelector('section.outlet');
  const outlet = await page.locator('section.outlet').first().innerText();
  if (!outlet.includes('在线')) throw new Error(`outlet not online: ${outlet}`);
  // Its 24-hour trend: a chart per limited factor with the limit line.
  if (!(await page.locator('figure.trend[data-factor="a21026"] svg line.limit').count())) {
    throw new Error('the enterprise page has no SO2 trend with its limit line');
  }
  await page.screenshot({ path: join(shots, 'enterprise.png'), fullPage: true });
  console.log(`SHOT ${join(shots, 'enterprise.png')}`);

  // The monthly report: the page, then the workbook through its link.
  const month = new Date().toISOString().slice(0, 7);
  await page.goto(`${url}/reports?month=${month}`);
  const report = await page.locator('.report').innerText();
  for (const needle of ['一、概况', '三、告警', '七、正面清单']) {
    if (!report.includes(needle)) throw new Error(`report lacks ${needle}`);
  }
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#xlsx')]);
  const saved = join(shots, `report-${month}.xlsx`);
  await download.saveAs(saved);
  if (!download.suggestedFilename().endsWith('.xlsx')) throw new Error(`download: ${download.suggestedFilename()}`);
  console.log(`SHOT ${saved}`);

  // A duty officer's phone (390 × 844): the board as cards, the alert with the
  // message, value against the limit and the form first; nothing scrolls sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [path, shot] of [['/', 'phone-board.png'], [detailPath, 'phone-alert.png'], [`/reports?month=${month}`, 'phone-report.png']]) {
    await page.goto(`${url}${path}`);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    if (wide > 390) throw new Error(`${path} scrolls sideways on a phone: ${wide}px`);
    await page.screenshot({ path: join(shots, shot), fullPage: true });
    console.log(`SHOT ${join(shots, shot)}`);
  }

  // The overview, on the phone too: the open alert counted under its district,
  // then live — the alert is resolved elsewhere and the counts change without a reload.
  await page.goto(`${url}/overview`);
  await page.waitForSelector('#live.ok', { timeout: 10000 });
  const before = await page.locator('#overview').innerText();
  for (const needle of ['未解除 1', '吴中区', '排口在线', '有效传输率', '停限产令']) {
    if (!before.includes(needle)) throw new Error(`overview lacks ${needle}: ${before}`);
  }
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 390) throw new Error(`/overview scrolls sideways on a phone: ${wide}px`);
  await page.screenshot({ path: join(shots, 'phone-overview.png'), fullPage: true });
  console.log(`SHOT ${join(shots, 'phone-overview.png')}`);
  await page.evaluate(() => { window.__noReload = true; });
  const id = detailPath.split('/').pop();
  const resolved = await page.evaluate(async (id) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch(`/api/v1/alerts/${id}/resolve`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify({ note: '企业已整改' }),
    });
    return r.status;
  }, id);
  if (resolved !== 200) throw new Error(`resolve: ${resolved}`);
  await page.waitForFunction(() => document.querySelector('[data-ov="open"]')?.textContent === '未解除 0', null, { timeout: 15000 });
  if (!(await page.evaluate(() => window.__noReload === true))) throw new Error('the overview reloaded');
}

async function load(page) {
  const t0 = Date.now();
  await login(page);
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return { server_ms: n.responseStart - n.requestStart, transfer_ms: n.responseEnd - n.responseStart,
      dom_ready_ms: n.domContentLoadedEventEnd - n.startTime, load_ms: n.loadEventEnd - n.startTime,
      bytes: n.transferSize };
  });
  const rows = await page.locator('tr[data-alert]').count();
  const counts = await page.locator('.counts').innerText();
  if (!counts.includes('未确认 1000')) throw new Error(`counts: ${counts}`);
  if (rows < 1) throw new Error('no rows');
  await page.screenshot({ path: join(shots, 'board-1000.png') });
  console.log(`SHOT ${join(shots, 'board-1000.png')}`);
  // The live refresh of the same board (what an event triggers).
  const refresh_ms = await page.evaluate(async () => {
    const b = document.getElementById('board');
    const t = performance.now();
    const r = await fetch(b.dataset.src, { credentials: 'same-origin' });
    b.innerHTML = await r.text();
    await new Promise((res) => requestAnimationFrame(() => res()));
    return performance.now() - t;
  });
  // A filter: severity critical (the form submits on change).
  const f0 = Date.now();
  await Promise.all([page.waitForURL(/severity=critical/), page.selectOption('select[name=severity]', 'critical')]);
  await page.waitForSelector('#board');
  const filter_ms = Date.now() - f0;
  const sev = await page.locator('tr[data-alert]').evaluateAll((trs) => trs.map((t) => t.className));
  if (sev.length === 0 || sev.some((c) => !c.includes('sev-critical'))) throw new Error(`filter let through: ${sev.slice(0, 5)}`);
  const fcounts = await page.locator('.counts').innerText();
  if (!fcounts.includes('未确认 250')) throw new Error(`filtered counts: ${fcounts}`);
  console.log(`TIMING ${JSON.stringify({ rows_on_page: rows, ...nav, refresh_ms, filter_ms, login_to_board_ms: Date.now() - t0 - filter_ms })}`);
}

let failed = null;
try {
  const page = context.pages()[0] || await context.newPage();
  watch(page);
  if (scenario === 'live') await live(page);
  else if (scenario === 'load') await load(page);
  else throw new Error(`unknown scenario ${scenario}`);
} catch (e) {
  failed = e;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (failed) { console.error(`FAILED: ${failed.stack || failed}`); }
if (problems.length) { console.error(`FAILED: browser errors:\n${problems.join('\n')}`); }
process.exit(failed || problems.length ? 1 : 0);
