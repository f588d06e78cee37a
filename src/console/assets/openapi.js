// The API page: the operations of `/openapi.json` (method, path, summary), when the server
// serves its OpenAPI description.

import { h, replace, table, errorBox } from './dom.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];

/** Renders the page. */
export function render(main) {
  const slot = h('div', { id: 'openapi' }, h('p', { class: 'muted' }, 'Loading /openapi.json…'));
  replace(main, h('h1', {}, 'API'), slot);
  fetch('/openapi.json', { cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' })
    .then(async (response) => {
      if (response.status === 404) {
        replace(slot, h('div', { class: 'error', id: 'openapi-absent' }, 'This server does not serve /openapi.json: its build has no OpenAPI description. The README lists every route.'));
        return;
      }
      if (!response.ok) throw new Error(`/openapi.json answered ${response.status}`);
      const spec = await response.json();
      const operations = [];
      for (const [path, item] of Object.entries(spec.paths || {})) {
        for (const method of METHODS) {
          if (item[method]) operations.push({ method, path, summary: item[method].summary || item[method].operationId || '' });
        }
      }
      const info = spec.info || {};
      replace(
        slot,
        h('p', {}, `${info.title || 'API'} ${info.version || ''} — OpenAPI ${spec.openapi || ''}, ${operations.length} operations. `, h('a', { href: '/openapi.json' }, 'Raw JSON')),
        table(
          [
            ['Method', (o) => h('span', { class: 'method' }, o.method.toUpperCase())],
            ['Path', (o) => h('code', {}, o.path)],
            ['Summary', (o) => o.summary],
          ],
          operations,
          () => ({ class: 'operation' }),
        ),
      );
    })
    .catch((e) => replace(slot, errorBox(e)));
}
