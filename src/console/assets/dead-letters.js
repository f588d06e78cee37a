// Dead letters of a subscription, each with its attempts, refreshed every 2 s (a redriven
// event leaves the list once it is delivered); redrive one or all.

import { api, allPages, subscriptions } from './api.js';
import { h, replace, table, errorBox, okBox, time } from './dom.js';

const REFRESH_MS = 2000;

function attempts(letter) {
  return h(
    'ol',
    {},
    letter.attempts.map((a) =>
      h('li', {}, `${time(a.at_ms)} — ${a.outcome}${a.reason ? `: ${a.reason}` : ''} (${a.duration_ms} ms)`),
    ),
  );
}

async function letters(slot, status, id) {
  const items = await allPages(`/subscriptions/${encodeURIComponent(id)}/dead-letters`, 'dead_letters');
  const redrive = async (body, what) => {
    try {
      const answer = await api('POST', `/subscriptions/${encodeURIComponent(id)}/dead-letters/redrive`, body);
      replace(status, okBox(`Redriven ${what}: ${answer.redriven} event(s) queued again.`));
      await letters(slot, status, id);
    } catch (e) {
      replace(status, errorBox(e));
    }
  };
  replace(
    slot,
    h('div', { class: 'row' }, h('p', {}, `${items.length} dead letter(s) for `, h('span', { class: 'mono' }, id)), items.length ? h('button', { type: 'button', id: 'redrive-all', onclick: () => redrive('', 'all') }, 'Redrive all') : null),
    items.length === 0
      ? null
      : table(
          [
            ['Sequence', (d) => String(d.sequence), 'num'],
            ['Event id', (d) => h('span', { class: 'mono' }, d.id)],
            ['Instance', (d) => d.instance],
            ['Event', (d) => d.event],
            ['Dead since', (d) => time(d.dead_at_ms)],
            ['Attempts', attempts],
            ['', (d) => h('button', { type: 'button', class: 'secondary', 'data-redrive': String(d.sequence), onclick: () => redrive({ sequences: [d.sequence] }, `sequence ${d.sequence}`) }, 'Redrive')],
          ],
          items,
          (d) => ({ 'data-sequence': String(d.sequence) }),
        ),
  );
}

/** Renders the page: a picker, and the chosen subscription's dead letters; returns the
 * cleanup that stops the refresh. */
export function render(main, [id]) {
  const slot = h('section', { class: 'card', id: 'dead-letters' });
  const status = h('div', { id: 'dead-letters-status' });
  const picker = h('select', { id: 'dead-pick', 'aria-label': 'subscription' }, h('option', { value: '' }, 'Choose a subscription'));
  picker.addEventListener('change', () => {
    if (picker.value) location.hash = `#/dead-letters/${encodeURIComponent(picker.value)}`;
  });
  replace(main, h('h1', {}, 'Dead letters'), h('p', {}, picker), status, slot);
  subscriptions()
    .then((items) => {
      for (const s of items) {
        const dead = s.status ? s.status.dead_letters : 0;
        picker.append(h('option', { value: s.id, selected: s.id === id }, `${s.id} (${dead})`));
      }
    })
    .catch((e) => replace(status, errorBox(e)));
  if (!id) return undefined;
  let stopped = false;
  let timer = null;
  const loop = async () => {
    try {
      await letters(slot, status, id);
    } catch (e) {
      replace(slot, errorBox(e));
    }
    if (!stopped) timer = setTimeout(loop, REFRESH_MS);
  };
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
