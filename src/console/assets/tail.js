// The live tail: events as they are accepted, over `/ws`, filtered by instance and event
// name. The key travels as a WebSocket subprotocol, never in the URL.

import { instances, websocketProtocols } from './api.js';
import { h, replace, errorBox, time } from './dom.js';

const KEEP = 200;

function summary(envelope) {
  const text = JSON.stringify(envelope.data);
  return text && text.length > 160 ? `${text.slice(0, 160)}…` : text || '';
}

/** Renders the page; returns the cleanup that closes the socket. */
export function render(main) {
  const instance = h('select', { id: 'tail-instance' }, h('option', { value: '' }, 'every instance'));
  const events = h('input', { id: 'tail-events', placeholder: 'messages.upsert, chats.update (empty: all)', size: 36 });
  const start = h('button', { type: 'submit', id: 'tail-start' }, 'Start');
  const stop = h('button', { type: 'button', id: 'tail-stop', class: 'secondary', disabled: true }, 'Stop');
  const state = h('span', { id: 'tail-state', class: 'muted' }, 'stopped');
  const rows = h('tbody', { id: 'tail-rows' });
  const status = h('div');
  let socket = null;

  const close = () => {
    if (socket) socket.close(1000);
    socket = null;
    start.disabled = false;
    stop.disabled = true;
  };

  const form = h('form', { class: 'row', id: 'tail-form' }, h('label', {}, 'Instance', instance), h('label', {}, 'Events', events), start, stop, state);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    close();
    replace(status);
    const params = new URLSearchParams();
    if (instance.value) params.set('instance', instance.value);
    const names = events.value.split(/[\s,]+/).filter(Boolean).join(',');
    if (names) params.set('events', names);
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${scheme}://${location.host}/ws${params.toString() ? `?${params}` : ''}`;
    const ws = new WebSocket(url, websocketProtocols());
    socket = ws;
    start.disabled = true;
    stop.disabled = false;
    state.textContent = 'connecting…';
    ws.addEventListener('open', () => {
      state.textContent = 'live';
    });
    ws.addEventListener('message', (message) => {
      let envelope;
      try {
        envelope = JSON.parse(message.data);
      } catch {
        return;
      }
      if (envelope.error) {
        replace(status, errorBox(envelope.error.message));
        return;
      }
      if (envelope.subscribed) return;
      rows.prepend(
        h(
          'tr',
          { 'data-sequence': String(envelope.sequence), 'data-event': envelope.event, 'data-instance': envelope.instance },
          h('td', { class: 'num' }, String(envelope.sequence)),
          h('td', {}, time(envelope.date_time)),
          h('td', {}, envelope.instance),
          h('td', {}, envelope.event),
          h('td', {}, h('code', {}, summary(envelope))),
        ),
      );
      while (rows.children.length > KEEP) rows.lastElementChild.remove();
    });
    ws.addEventListener('close', (event) => {
      if (socket === ws) {
        socket = null;
        start.disabled = false;
        stop.disabled = true;
      }
      state.textContent = event.code === 1000 ? 'stopped' : `closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`;
    });
    ws.addEventListener('error', () => {
      replace(status, errorBox('The WebSocket could not connect (is the key allowed to see that instance, and are listeners enabled?).'));
    });
  });
  stop.addEventListener('click', close);

  replace(
    main,
    h('h1', {}, 'Live tail'),
    h('section', { class: 'card' }, form),
    status,
    h('table', { class: 'tail-log' }, h('thead', {}, h('tr', {}, ['Sequence', 'Time', 'Instance', 'Event', 'Data'].map((t) => h('th', {}, t)))), rows),
  );
  instances()
    .then((list) => {
      for (const i of list) instance.append(h('option', { value: i.name }, i.name));
    })
    .catch((e) => replace(status, errorBox(e)));
  return close;
}
