// Building the page from data without ever parsing it as markup: every value goes in as
// text, so whatever an event or an error message contains is shown, never run.

/** An element: `attrs` are properties/attributes (`on*` functions become listeners). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'value') {
      // Also the default, so a form's reset() returns to it.
      if ('defaultValue' in el && el.tagName !== 'SELECT') el.defaultValue = value;
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A table: `columns` are [title, render(row) -> node|text, class?]. */
export function table(columns, rows, rowAttrs = () => ({})) {
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', {}, title)))),
    h(
      'tbody',
      {},
      rows.map((row) =>
        h('tr', rowAttrs(row), columns.map(([, render, cls]) => h('td', { class: cls }, render(row)))),
      ),
    ),
  );
}

/** An error box showing `error`'s message (the server's envelope message for API errors). */
export function errorBox(error) {
  return h('div', { class: 'error', role: 'alert' }, error instanceof Error ? error.message : String(error));
}

/** A confirmation box. */
export function okBox(text) {
  return h('div', { class: 'ok', role: 'status' }, text);
}

/** UTC milliseconds or RFC 3339 as local date and time. */
export function time(value) {
  if (value === undefined || value === null || value === '') return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** Compact JSON, or '' for nothing. */
export function json(value) {
  return value === undefined || value === null ? '' : JSON.stringify(value);
}
