// Subscriptions with their status, refreshed every 2 s: lag, in flight, parked, dead
// letters, last error, throttle and filter; enable/disable; replay from a sequence or a time.

import { api, subscriptions } from './api.js';
import { h, replace, table, errorBox, okBox, json } from './dom.js';

const REFRESH_MS = 2000;

/** The one-word state, as `switchyard subscriptions` prints it. */
export function stateOf(sub) {
  const s = sub.status;
  if (!sub.enabled) return 'disabled';
  if (!s) return 'idle';
  if (s.stopped_reason) return 'stopped';
  if (!s.running) return 'idle';
  if (s.parked > 0) return 'parked';
  if (s.lag > 0 || s.in_flight > 0) return 'lagging';
  return 'ok';
}

function number(field) {
  return (sub) => (sub.status ? String(sub.status[field]) : '');
}

function replayForm(items, status) {
  const which = h('select', { id: 'replay-subscription' }, items.map((s) => h('option', { value: s.id }, s.id)));
  const mode = h('select', { id: 'replay-mode' }, h('option', { value: 'sequence' }, 'from sequence'), h('option', { value: 'time' }, 'since time'));
  const sequence = h('input', { id: 'replay-sequence', type: 'number', min: 0, value: '0' });
  const since = h('input', { id: 'replay-since', type: 'datetime-local', step: 1, hidden: true });
  mode.addEventListener('change', () => {
    sequence.hidden = mode.value !== 'sequence';
    since.hidden = mode.value !== 'time';
  });
  const form = h('form', { class: 'row', id: 'replay-form' }, h('label', {}, 'Subscription', which), h('label', {}, 'Replay', mode), sequence, since, h('button', { type: 'submit' }, 'Replay'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let body;
    if (mode.value === 'sequence') {
      body = { from_sequence: Number(sequence.value) };
    } else {
      const at = new Date(since.value);
      if (Number.isNaN(at.getTime())) {
        replace(status, errorBox('Pick a date and time to replay from.'));
        return;
      }
      body = { since: at.toISOString() };
    }
    try {
      const answer = await api('POST', `/subscriptions/${encodeURIComponent(which.value)}/replay`, body);
      const asked = body.since ? `since ${body.since}` : `from sequence ${body.from_sequence}`;
      replace(status, okBox(`Replaying ${answer.subscription} ${asked}: its cursor is now ${answer.cursor}.`));
    } catch (e) {
      replace(status, errorBox(e));
    }
  });
  return form;
}

/** Renders the page; returns the cleanup that stops the refresh. */
export function render(main) {
  const status = h('div', { id: 'subscriptions-status' });
  const list = h('div', { id: 'subscriptions-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const replaySlot = h('section', { class: 'card' });
  let shownIds = '';
  let stopped = false;
  let timer = null;

  const toggle = async (sub) => {
    const action = sub.enabled ? 'disable' : 'enable';
    try {
      await api('POST', `/subscriptions/${encodeURIComponent(sub.id)}/${action}`, '');
      replace(status, okBox(`${sub.id} ${action}d.`));
      await refresh();
    } catch (e) {
      replace(status, errorBox(e));
    }
  };

  async function refresh() {
    try {
      const items = await subscriptions();
      const ids = items.map((s) => s.id).join('\n');
      if (ids !== shownIds) {
        shownIds = ids;
        replace(replaySlot, h('h2', {}, 'Replay'), items.length ? replayForm(items, status) : h('p', { class: 'muted' }, 'Nothing to replay.'));
      }
      replace(
        list,
        items.length === 0
          ? h('p', { class: 'muted' }, 'No subscriptions.')
          : table(
              [
                ['Id', (s) => h('span', { class: 'mono' }, s.id)],
                ['Sink', (s) => s.sink],
                ['Instance', (s) => s.instance || 'all'],
                ['State', (s) => h('span', { class: `state-${stateOf(s)}`, 'data-col': 'state' }, stateOf(s))],
                ['Lag', number('lag'), 'num lag'],
                ['In flight', number('in_flight'), 'num in-flight'],
                ['Parked', number('parked'), 'num parked'],
                ['Dead letters', number('dead_letters'), 'num dead'],
                ['Delivered', number('delivered'), 'num delivered'],
                ['Last error', (s) => (s.status && (s.status.stopped_reason || s.status.last_error)) || ''],
                ['Throttle', (s) => (s.policy && s.policy.rate_per_second ? `${s.policy.rate_per_second}/s` : '')],
                ['Filter', (s) => h('code', {}, json(s.filter))],
                [
                  '',
                  (s) => [
                    h('button', { type: 'button', class: 'secondary', 'data-toggle': s.id, onclick: () => toggle(s) }, s.enabled ? 'Disable' : 'Enable'),
                    ' ',
                    h('a', { href: `#/edit/${encodeURIComponent(s.id)}` }, 'Edit'),
                    ' ',
                    h('a', { href: `#/dead-letters/${encodeURIComponent(s.id)}` }, 'Dead letters'),
                  ],
                ],
              ],
              items,
              (s) => ({ 'data-subscription': s.id }),
            ),
      );
    } catch (e) {
      replace(list, errorBox(e));
    }
  }

  async function loop() {
    await refresh();
    if (!stopped) timer = setTimeout(loop, REFRESH_MS);
  }

  replace(main, h('h1', {}, 'Subscriptions'), h('p', { class: 'muted' }, `Refreshed every ${REFRESH_MS / 1000} s.`), status, list, replaySlot);
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
