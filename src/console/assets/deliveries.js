// Delivery lookup: what became of a WhatsApp message (or one event) at each subscription,
// with every attempt and what the destination answered.

import { api } from './api.js';
import { h, replace, table, errorBox, time } from './dom.js';

function attemptsTable(delivery) {
  if (!delivery.attempts || delivery.attempts.length === 0) return h('span', { class: 'muted' }, 'no attempts');
  return table(
    [
      ['#', (a) => String(a.attempt), 'num'],
      ['At', (a) => time(a.at)],
      ['Duration', (a) => `${a.duration_ms} ms`, 'num'],
      ['Outcome', (a) => a.outcome],
      ['HTTP', (a) => (a.http_status === null || a.http_status === undefined ? '' : String(a.http_status)), 'num http'],
      ['Error', (a) => a.error || ''],
      ['Response', (a) => h('pre', {}, a.response || '')],
    ],
    delivery.attempts,
    () => ({ class: 'attempt' }),
  );
}

/** Renders the page. */
export function render(main) {
  const kind = h('select', { id: 'lookup-kind' }, h('option', { value: 'message_id' }, 'WhatsApp message id'), h('option', { value: 'event_id' }, 'event id'));
  const value = h('input', { id: 'lookup-value', required: true, size: 40 });
  const results = h('div', { id: 'lookup-results' });
  const form = h('form', { class: 'row', id: 'lookup-form' }, h('label', {}, 'Find by', kind), h('label', {}, 'Id', value), h('button', { type: 'submit' }, 'Find'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    replace(results, h('p', { class: 'muted' }, 'Looking…'));
    try {
      const query = `${kind.value}=${encodeURIComponent(value.value.trim())}&limit=100`;
      const answer = await api('GET', `/deliveries?${query}`);
      const items = answer.deliveries || [];
      replace(
        results,
        items.length === 0
          ? h('p', { class: 'muted' }, 'No event with that id at any subscription this key can see.')
          : table(
              [
                ['Subscription', (d) => h('span', { class: 'mono' }, d.subscription)],
                ['Status', (d) => h('strong', { 'data-col': 'status' }, d.status)],
                ['Sequence', (d) => String(d.sequence), 'num'],
                ['Event id', (d) => h('span', { class: 'mono' }, d.event_id)],
                ['Message id', (d) => d.message_id || ''],
                ['Attempts', attemptsTable],
              ],
              items,
              (d) => ({ 'data-delivery': d.subscription }),
            ),
      );
    } catch (e) {
      replace(results, errorBox(e));
    }
  });
  replace(main, h('h1', {}, 'Delivery lookup'), h('section', { class: 'card' }, form), results);
}
