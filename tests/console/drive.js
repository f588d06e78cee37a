// Drives the operator's console in Debian's headless Chromium, as an operator would, for
// tests/console.rs. Reads CONSOLE_URL, CONSOLE_KEY, RECEIVER_URL (the webhook target),
// RECEIVER_CONTROL (the test receiver's switches), INSTANCE, OTHER (instance names) and
// SCREENSHOTS (a directory) from the environment, and prints one JSON report on stdout:
// what each page showed, every URL the browser requested, and the page's errors. The Rust
// test asserts on the report; this script only fails outright when a step cannot happen.

'use strict';

const { chromium } = require('playwright-core');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env('CONSOLE_URL');
const KEY = env('CONSOLE_KEY');
const RECEIVER_URL = env('RECEIVER_URL');
const CONTROL = env('RECEIVER_CONTROL');
const INSTANCE = env('INSTANCE');
const OTHER = env('OTHER');
const SHOTS = env('SCREENSHOTS');

const report = { steps: {}, requests: [], page_errors: [], console_errors: [] };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Switches the receiver: `down`, `up`, `reject/{message id}`, `accept`. */
async function control(what) {
  const response = await fetch(`${CONTROL}/${what}`, { method: 'POST' });
  if (!response.ok) throw new Error(`receiver control ${what}: ${response.status}`);
}

/** Ingests events through the API (what a gateway does; not a console job). */
async function ingest(instance, events) {
  const response = await fetch(`${BASE}/ingest/${instance}`, {
    method: 'POST',
    headers: { apikey: KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ events }),
  });
  if (response.status !== 202) throw new Error(`ingest answered ${response.status}: ${await response.text()}`);
}

function message(id, text) {
  return {
    event: 'messages.upsert',
    data: {
      key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: false, id },
      message: { conversation: text || id },
      messageType: 'conversation',
    },
  };
}

/** Polls `probe` until it returns a truthy value, or throws after `ms`. */
async function until(what, ms, probe) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    await sleep(200);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function signIn(page, key) {
  await page.fill('#apikey', key);
  await page.click('#signin-submit');
}

async function cellText(row, cls) {
  return (await row.locator(`td.${cls}`).first().textContent()).trim();
}

async function run(page) {
  // Sign-in page, then a wrong key, then the global key.
  const first = await page.goto(`${BASE}/ui`);
  report.steps.csp = first.headers()['content-security-policy'] || null;
  await page.waitForSelector('#apikey');
  await shot(page, '01-sign-in');
  await signIn(page, 'not-the-key');
  report.steps.wrong_key = (await page.locator('#signin .error').textContent()).trim();
  await signIn(page, KEY);
  await page.waitForFunction(() => document.getElementById('who').textContent.includes('global key'));
  report.steps.signed_in_as = await page.textContent('#who');

  // Instances: create one with a webhook, and another without.
  await page.goto(`${BASE}/ui/#/instances`);
  await page.fill('#create-name', INSTANCE);
  await page.fill('#create-number', '5511999990000');
  await page.fill('#create-webhook', RECEIVER_URL);
  await page.fill('#create-events', 'MESSAGES_UPSERT');
  await page.click('#create-submit');
  const token = (await page.locator('#new-token').textContent()).trim();
  await page.fill('#create-name', OTHER);
  await page.click('#create-submit');
  await page.waitForSelector(`tr[data-instance="${OTHER}"]`);
  // One more, deleted from its row (the confirmation dialog is accepted).
  const doomed = `${INSTANCE}-gone`;
  await page.fill('#create-name', doomed);
  await page.click('#create-submit');
  await page.waitForSelector(`tr[data-instance="${doomed}"]`);
  await page.click(`button[data-delete="${doomed}"]`);
  await page.waitForSelector(`tr[data-instance="${doomed}"]`, { state: 'detached' });
  const deleted = (await page.locator('#instances-status .ok').textContent()).trim();
  const row = page.locator(`tr[data-instance="${INSTANCE}"]`);
  report.steps.instances = {
    rows: await page.locator('tr[data-instance]').evaluateAll((rows) => rows.map((r) => r.dataset.instance)),
    webhook: (await row.locator('[data-sink="webhook"]').textContent()).trim(),
    token_shown: token.length > 0,
    deleted,
    events_field_after_create: await page.inputValue('#create-events'),
  };
  await shot(page, '02-instances');

  // Subscriptions: the receiver is down, events come in, the lag goes up; it comes back, 0.
  await control('down');
  await ingest(INSTANCE, [0, 1, 2, 3, 4].map((n) => message(`MSG-${INSTANCE}-${n}`)));
  await page.goto(`${BASE}/ui/#/subscriptions`);
  const sub = page.locator('tr[data-subscription^="webhook:"]', { hasText: INSTANCE });
  const subscription = await until('the instance subscription row', 20000, async () => sub.getAttribute('data-subscription'));
  const down = await until('lag > 0 and the error while the receiver is down', 30000, async () => {
    const lag = Number(await cellText(sub, 'lag'));
    const error = (await sub.locator('td').nth(9).textContent()).trim();
    return lag > 0 && error ? { lag, error } : null;
  });
  await shot(page, '03-subscriptions-lagging');
  await control('up');
  const drained = await until('lag and in flight back to 0', 60000, async () => {
    const lag = Number(await cellText(sub, 'lag'));
    const inFlight = Number(await cellText(sub, 'in-flight'));
    const delivered = Number(await cellText(sub, 'delivered'));
    return lag === 0 && inFlight === 0 && delivered >= 5 ? { lag, inFlight, delivered } : null;
  });
  report.steps.subscriptions = {
    subscription,
    lag_while_down: down.lag,
    last_error_while_down: down.error,
    lag_after: drained.lag,
    in_flight_after: drained.inFlight,
    delivered_after: drained.delivered,
    state_after: (await sub.locator('[data-col="state"]').textContent()).trim(),
  };
  // Disable, then enable again, from the page.
  await sub.locator('button[data-toggle]').click();
  await until('state disabled', 10000, async () => (await sub.locator('[data-col="state"]').textContent()).trim() === 'disabled');
  await sub.locator('button[data-toggle]').click();
  await until('state ok again', 20000, async () => (await sub.locator('[data-col="state"]').textContent()).trim() === 'ok');
  report.steps.toggled = true;
  await shot(page, '04-subscriptions');

  // The editor: a bad filter shows the server's message naming the path; a good policy saves.
  await page.goto(`${BASE}/ui/#/edit/${encodeURIComponent(subscription)}`);
  await page.waitForSelector('#edit-filter');
  await page.fill('#edit-filter', '{"chats": {"allow": ["12"]}}');
  await page.click('#edit-save');
  const refused = (await page.locator('#edit-status .error').textContent()).trim();
  await shot(page, '05-editor-error');
  await page.fill('#edit-filter', '');
  await page.fill('#edit-policy', '{"non_retryable_status_codes": [422], "rate_per_second": 50}');
  await page.click('#edit-save');
  await page.waitForSelector('#edit-status .ok');
  report.steps.editor = { refused, saved_policy: JSON.parse(await page.inputValue('#edit-policy')) };
  await shot(page, '06-editor');

  // A dead letter: the receiver refuses one message with 422 (now not retried).
  const deadId = `DEAD-${INSTANCE}`;
  await control(`reject/${deadId}`);
  await ingest(INSTANCE, [message(deadId)]);
  await page.goto(`${BASE}/ui/#/dead-letters/${encodeURIComponent(subscription)}`);
  const letter = page.locator('#dead-letters tr[data-sequence]');
  await until('the dead letter', 30000, async () => {
    return (await letter.count()) > 0;
  });
  const deadAttempts = (await letter.first().locator('li').allTextContents()).map((t) => t.trim());
  const deadSequence = await letter.first().getAttribute('data-sequence');
  await shot(page, '07-dead-letters');
  await control('accept');
  await page.click(`button[data-redrive="${deadSequence}"]`);
  const redriven = (await page.locator('#dead-letters-status .ok').textContent()).trim();
  await until('no dead letters left', 30000, async () => (await letter.count()) === 0);
  report.steps.dead_letters = { attempts: deadAttempts, sequence: Number(deadSequence), redriven };
  await shot(page, '08-dead-letters-redriven');

  // Delivery lookup by WhatsApp message id: every attempt, the 503s and the 200.
  await page.goto(`${BASE}/ui/#/deliveries`);
  const lookup = async (id) => {
    await page.selectOption('#lookup-kind', 'message_id');
    await page.fill('#lookup-value', id);
    await page.click('#lookup-form button[type="submit"]');
    const delivery = page.locator(`#lookup-results tr[data-delivery="${subscription}"]`);
    await delivery.first().waitFor({ timeout: 5000 });
    return {
      status: (await delivery.first().locator('[data-col="status"]').textContent()).trim(),
      http: (await delivery.first().locator('tr.attempt td.http').allTextContents()).map((t) => t.trim()),
    };
  };
  const deadLookup = await until('the redriven message delivered', 30000, async () => {
    const found = await lookup(deadId);
    return found.status === 'delivered' ? found : null;
  });
  const firstLookup = await until('the first message found', 30000, async () => lookup(`MSG-${INSTANCE}-0`));
  report.steps.deliveries = { first: firstLookup, dead: deadLookup };
  await shot(page, '09-deliveries');

  // The live tail over /ws: only this instance's messages.upsert.
  await page.goto(`${BASE}/ui/#/tail`);
  await page.waitForSelector(`#tail-instance option[value="${INSTANCE}"]`, { state: 'attached' });
  await page.selectOption('#tail-instance', INSTANCE);
  await page.fill('#tail-events', 'messages.upsert');
  await page.click('#tail-start');
  await until('the tail to be live', 10000, async () => (await page.textContent('#tail-state')) === 'live');
  const tailId = `TAIL-${INSTANCE}`;
  await ingest(OTHER, [message(`OTHER-${INSTANCE}`)]);
  await ingest(INSTANCE, [{ event: 'chats.update', data: { remoteJid: '5511988887777@s.whatsapp.net' } }]);
  await ingest(INSTANCE, [message(tailId, 'hello from the tail')]);
  const tailRow = page.locator('#tail-rows tr', { hasText: tailId });
  await tailRow.waitFor({ timeout: 15000 });
  await sleep(500);
  report.steps.tail = {
    row: (await tailRow.textContent()).trim(),
    rows: await page.locator('#tail-rows tr').evaluateAll((rows) => rows.map((r) => ({ instance: r.dataset.instance, event: r.dataset.event }))),
  };
  await shot(page, '10-tail');
  await page.click('#tail-stop');

  // The API page: the operations of /openapi.json, or a clear message without it.
  await page.goto(`${BASE}/ui/#/api`);
  await page.waitForSelector('#openapi table, #openapi-absent, #openapi .error');
  report.steps.api = {
    operations: await page.locator('#openapi tr.operation').count(),
    absent: (await page.locator('#openapi-absent').count()) > 0,
    text: (await page.locator('#openapi').textContent()).trim().slice(0, 300),
  };
  await shot(page, '11-api');

  // Replay, by the time picker and from a sequence: the receiver gets the events again.
  await page.goto(`${BASE}/ui/#/subscriptions`);
  const before = Number(await until('the delivered count', 10000, async () => cellText(sub, 'delivered')));
  await page.selectOption('#replay-subscription', subscription);
  await page.selectOption('#replay-mode', 'time');
  const since = new Date(Date.now() - 10 * 60 * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  const local = `${since.getFullYear()}-${pad(since.getMonth() + 1)}-${pad(since.getDate())}T${pad(since.getHours())}:${pad(since.getMinutes())}:${pad(since.getSeconds())}`;
  await page.fill('#replay-since', local);
  await page.click('#replay-form button[type="submit"]');
  const byTime = (await page.locator('#subscriptions-status .ok >> text=/ since /').textContent()).trim();
  await shot(page, '14-replay');
  const after = await until('the replayed events delivered again', 30000, async () => {
    const delivered = Number(await cellText(sub, 'delivered'));
    const lag = Number(await cellText(sub, 'lag'));
    return delivered > before && lag === 0 ? delivered : null;
  });
  await page.selectOption('#replay-mode', 'sequence');
  await page.fill('#replay-sequence', '0');
  await page.click('#replay-form button[type="submit"]');
  await page.waitForSelector('#subscriptions-status .ok >> text=/from sequence 0:/');
  report.steps.replay = {
    by_time: byTime,
    by_sequence: (await page.locator('#subscriptions-status .ok').textContent()).trim(),
    delivered_before: before,
    delivered_after: after,
  };

  // An instance token sees only its own instance.
  await page.click('#sign-out');
  await page.waitForSelector('#apikey');
  await signIn(page, token);
  await page.waitForFunction(() => document.getElementById('who').textContent.includes('instance token'));
  await page.goto(`${BASE}/ui/#/instances`);
  await page.waitForSelector('tr[data-instance]');
  const tokenInstances = await page.locator('tr[data-instance]').evaluateAll((rows) => rows.map((r) => r.dataset.instance));
  await shot(page, '12-instances-as-token');
  await page.goto(`${BASE}/ui/#/subscriptions`);
  await page.waitForSelector('tr[data-subscription]');
  const tokenSubscriptions = await page
    .locator('tr[data-subscription]')
    .evaluateAll((rows) => rows.map((r) => ({ id: r.dataset.subscription, instance: r.children[2].textContent })));
  await shot(page, '13-subscriptions-as-token');
  await page.goto(`${BASE}/ui/#/tail`);
  await page.waitForSelector(`#tail-instance option[value="${INSTANCE}"]`, { state: 'attached' });
  report.steps.as_token = {
    who: await page.textContent('#who'),
    instances: tokenInstances,
    subscriptions: tokenSubscriptions,
    tail_choices: await page.locator('#tail-instance option').evaluateAll((o) => o.map((x) => x.value)),
  };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('request', (request) => report.requests.push(request.url()));
    page.on('websocket', (ws) => report.requests.push(ws.url()));
    page.on('pageerror', (error) => report.page_errors.push(String(error)));
    page.on('console', (msg) => {
      if (msg.type() === 'error') report.console_errors.push(msg.text());
    });
    page.on('dialog', (dialog) => dialog.accept());
    try {
      await run(page);
    } catch (e) {
      report.failed = String(e && e.stack ? e.stack : e);
      await shot(page, 'failure').catch(() => {});
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ failed: String(e && e.stack ? e.stack : e), ...report })}\n`);
  process.exit(1);
});
