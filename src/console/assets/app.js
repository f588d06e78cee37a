// The console's shell: sign-in, navigation, and a hash router (`#/page/arg`) that gives
// each page the main element and takes back its cleanup (timers, the tail's socket).

import { currentKey, rememberKey, forgetKey, instances } from './api.js';
import { h, replace, errorBox } from './dom.js';
import * as instancesPage from './instances.js';
import * as subscriptionsPage from './subscriptions.js';
import * as editorPage from './editor.js';
import * as deadLettersPage from './dead-letters.js';
import * as deliveriesPage from './deliveries.js';
import * as tailPage from './tail.js';
import * as openapiPage from './openapi.js';

const PAGES = {
  instances: instancesPage,
  subscriptions: subscriptionsPage,
  edit: editorPage,
  'dead-letters': deadLettersPage,
  deliveries: deliveriesPage,
  tail: tailPage,
  api: openapiPage,
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOut = document.getElementById('sign-out');
let cleanup = null;

/** What the key is: the global key sees tokens in fetchInstances, an instance token one instance. */
async function describe() {
  const list = await instances();
  if (list.length === 0 || list.some((i) => 'token' in i)) return 'global key';
  return `instance token: ${list[0].name}`;
}

function showSignIn(message) {
  nav.hidden = true;
  signOut.hidden = true;
  who.textContent = '';
  const input = h('input', {
    id: 'apikey',
    type: 'password',
    autocomplete: 'off',
    placeholder: 'global API key or instance token',
    required: true,
  });
  const form = h(
    'form',
    { id: 'signin', class: 'card' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'The key stays in this tab only and is sent in the apikey header.'),
    h('label', {}, 'API key', input),
    message ? errorBox(message) : null,
    h('p', {}, h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in')),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    rememberKey(input.value.trim());
    input.value = '';
    try {
      await start();
    } catch (e) {
      forgetKey();
      showSignIn(e);
    }
  });
  replace(main, h('section', { class: 'card' }, form));
  input.focus();
}

async function start() {
  who.textContent = await describe();
  nav.hidden = false;
  signOut.hidden = false;
  if (!location.hash || location.hash === '#/') location.hash = '#/instances';
  route();
}

function route() {
  if (!currentKey()) return;
  if (cleanup) cleanup();
  cleanup = null;
  const [name, ...args] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const page = PAGES[name] || instancesPage;
  for (const link of nav.querySelectorAll('a')) {
    link.classList.toggle('active', link.getAttribute('href') === `#/${name}`);
  }
  main.replaceChildren();
  try {
    cleanup = page.render(main, args) || null;
  } catch (e) {
    replace(main, errorBox(e));
  }
}

signOut.addEventListener('click', () => {
  if (cleanup) cleanup();
  cleanup = null;
  forgetKey();
  location.hash = '';
  showSignIn();
});
window.addEventListener('hashchange', route);

if (currentKey()) {
  start().catch((e) => {
    forgetKey();
    showSignIn(e);
  });
} else {
  showSignIn();
}

