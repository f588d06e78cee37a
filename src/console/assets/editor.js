// The subscription editor: its filter and policy as JSON, saved with
// `PATCH /subscriptions/{id}`; the server validates and its 400 names the path at fault.

import { api, subscriptions } from './api.js';
import { h, replace, errorBox, okBox } from './dom.js';

const FILTER_HINT = '{"from_me": false, "chat_types": ["direct"], "chats": {"allow": [], "deny": ["status@broadcast"]}, "message_types": ["conversation"], "match": {"data.pushName": {"$startsWith": "A"}}}';
const POLICY_HINT = '{"max_attempts": 3, "retry_delays_ms": [1000, 5000], "timeout_ms": 5000, "non_retryable_status_codes": [400, 422], "rate_per_second": 20, "max_in_flight": 16, "disable_after_failures": 0, "ordering": "chat"}';

function pretty(value) {
  return value === undefined || value === null ? '' : JSON.stringify(value, null, 2);
}

/** Parses a textarea: empty clears the setting (null). */
function parse(name, text) {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${name} is not valid JSON: ${e.message}`);
  }
}

async function editor(slot, id) {
  const sub = await api('GET', `/subscriptions/${encodeURIComponent(id)}`);
  const filter = h('textarea', { id: 'edit-filter', spellcheck: 'false', placeholder: FILTER_HINT }, pretty(sub.filter));
  const policy = h('textarea', { id: 'edit-policy', spellcheck: 'false', placeholder: POLICY_HINT }, pretty(sub.policy));
  const status = h('div', { id: 'edit-status' });
  const form = h(
    'form',
    { id: 'edit-form' },
    h('p', {}, h('span', { class: 'mono' }, sub.id), ` — ${sub.sink}, ${sub.instance || 'all instances'}`),
    h('label', {}, 'Filter (empty: none)', filter),
    h('label', {}, 'Policy (empty: the server defaults)', policy),
    h('p', {}, h('button', { type: 'submit', id: 'edit-save' }, 'Save')),
    status,
    h('p', { class: 'muted' }, 'Shapes: see the README, "Filters and policies". Filter example: ', h('code', {}, FILTER_HINT)),
    h('p', { class: 'muted' }, 'Policy example: ', h('code', {}, POLICY_HINT)),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let body;
    try {
      body = { filter: parse('The filter', filter.value), policy: parse('The policy', policy.value) };
    } catch (e) {
      replace(status, errorBox(e));
      return;
    }
    try {
      const saved = await api('PATCH', `/subscriptions/${encodeURIComponent(id)}`, body);
      filter.value = pretty(saved.filter);
      policy.value = pretty(saved.policy);
      replace(status, okBox('Saved.'));
    } catch (e) {
      replace(status, errorBox(e));
    }
  });
  replace(slot, form);
}

/** Renders the page: a picker, and the editor of the chosen subscription. */
export function render(main, [id]) {
  const slot = h('section', { class: 'card' });
  const picker = h('select', { id: 'edit-pick', 'aria-label': 'subscription' }, h('option', { value: '' }, 'Choose a subscription'));
  picker.addEventListener('change', () => {
    if (picker.value) location.hash = `#/edit/${encodeURIComponent(picker.value)}`;
  });
  replace(main, h('h1', {}, 'Edit a subscription'), h('p', {}, picker), slot);
  subscriptions()
    .then((items) => {
      for (const s of items) picker.append(h('option', { value: s.id, selected: s.id === id }, s.id));
    })
    .catch((e) => replace(slot, errorBox(e)));
  if (id) editor(slot, id).catch((e) => replace(slot, errorBox(e)));
}
