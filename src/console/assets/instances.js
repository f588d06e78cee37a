// Instances: their sinks and settings, create (with a webhook), set a webhook, delete.

import { api, instances } from './api.js';
import { h, replace, table, errorBox, okBox, time, json } from './dom.js';

const SINKS = ['webhook', 'rabbitmq', 'sqs', 'kafka', 'nats', 'pusher', 'websocket'];

function sinkSummary(instance) {
  return SINKS.filter((kind) => instance[kind]).map((kind) => {
    const sink = instance[kind];
    const target = sink.url || sink.host || '';
    const events = (sink.events || []).length ? ` [${sink.events.join(', ')}]` : '';
    return h(
      'div',
      { 'data-sink': kind },
      h('strong', {}, kind),
      sink.enabled ? '' : ' (off)',
      target ? ` ${target}` : '',
      h('span', { class: 'muted' }, events),
    );
  });
}

function eventList(text) {
  return text
    .split(/[\s,]+/)
    .map((e) => e.trim())
    .filter(Boolean);
}

function createForm(status, reload) {
  const name = h('input', { id: 'create-name', required: true, pattern: '[A-Za-z0-9_\\-]{1,64}' });
  const number = h('input', { id: 'create-number', placeholder: '5511999990000' });
  const url = h('input', { id: 'create-webhook', type: 'url', size: 40, placeholder: 'https://example.com/hook' });
  const events = h('input', { id: 'create-events', value: 'MESSAGES_UPSERT', size: 30 });
  const form = h(
    'form',
    { class: 'row', id: 'create-form' },
    h('label', {}, 'Name', name),
    h('label', {}, 'Number', number),
    h('label', {}, 'Webhook URL (optional)', url),
    h('label', {}, 'Webhook events', events),
    h('button', { type: 'submit', id: 'create-submit' }, 'Create'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { instanceName: name.value.trim() };
    if (number.value.trim()) body.number = number.value.trim();
    if (url.value.trim()) {
      body.webhook = { enabled: true, url: url.value.trim(), events: eventList(events.value) };
    }
    try {
      const answer = await api('POST', '/instance/create', body);
      replace(
        status,
        okBox([
          `Created ${answer.instance.instanceName}. Its instance token (shown once here): `,
          h('code', { id: 'new-token' }, answer.hash.apikey),
        ]),
      );
      form.reset();
      await reload();
    } catch (e) {
      replace(status, errorBox(e));
    }
  });
  return form;
}

function webhookForm(instance, status, reload) {
  const current = instance.webhook || {};
  const url = h('input', { type: 'url', size: 32, value: current.url || '', 'aria-label': 'webhook URL' });
  const events = h('input', { size: 22, value: (current.events || []).join(','), 'aria-label': 'webhook events' });
  const enabled = h('input', { type: 'checkbox', 'aria-label': 'enabled' });
  enabled.checked = current.enabled !== false;
  const form = h('form', { class: 'row' }, url, events, h('label', {}, 'on', enabled), h('button', { type: 'submit', class: 'secondary' }, 'Set webhook'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('POST', `/webhook/set/${encodeURIComponent(instance.name)}`, {
        webhook: { enabled: enabled.checked, url: url.value.trim(), events: eventList(events.value) },
      });
      replace(status, okBox(`Webhook of ${instance.name} saved.`));
      await reload();
    } catch (e) {
      replace(status, errorBox(e));
    }
  });
  return form;
}

/** Renders the page. */
export function render(main) {
  const status = h('div', { id: 'instances-status' });
  const list = h('div', { id: 'instances-list' }, h('p', { class: 'muted' }, 'Loading…'));
  async function reload() {
    try {
      const items = await instances();
      const remove = async (instance) => {
        if (!window.confirm(`Delete instance ${instance.name} and its sinks?`)) return;
        try {
          await api('DELETE', `/instance/delete/${encodeURIComponent(instance.name)}`);
          replace(status, okBox(`Deleted ${instance.name}.`));
          await reload();
        } catch (e) {
          replace(status, errorBox(e));
        }
      };
      replace(
        list,
        items.length === 0
          ? h('p', { class: 'muted' }, 'No instances yet.')
          : table(
              [
                ['Name', (i) => h('strong', {}, i.name)],
                ['Number', (i) => i.number || ''],
                ['Id', (i) => h('span', { class: 'mono' }, i.id)],
                ['Created', (i) => time(i.createdAt)],
                ['Sinks', (i) => sinkSummary(i)],
                ['Settings', (i) => h('pre', {}, json(i.settings))],
                ['Webhook', (i) => webhookForm(i, status, reload)],
                ['', (i) => h('button', { class: 'danger', type: 'button', 'data-delete': i.name, onclick: () => remove(i) }, 'Delete')],
              ],
              items,
              (i) => ({ 'data-instance': i.name }),
            ),
      );
    } catch (e) {
      replace(list, errorBox(e));
    }
  }
  replace(
    main,
    h('h1', {}, 'Instances'),
    h('section', { class: 'card' }, h('h2', {}, 'New instance'), createForm(status, reload)),
    status,
    list,
  );
  reload();
}
