// Lobby: create a room (named or random), show its invite link, join it with a name.

import { renderIcons } from './icons.js';
import { $, copyText, toast, defaultName, rememberName, cleanName, ROOM_RE } from './ui.js';

const ADJECTIVES = ['amber', 'brisk', 'calm', 'clever', 'cosmic', 'crisp', 'daring', 'gentle', 'golden', 'happy', 'lucid', 'mellow', 'nimble', 'quiet', 'rapid', 'silver', 'sunny', 'swift', 'vivid', 'witty'];
const NOUNS = ['otter', 'falcon', 'harbor', 'meadow', 'comet', 'river', 'maple', 'lantern', 'summit', 'canyon', 'breeze', 'orchid', 'pebble', 'willow', 'aurora', 'badger', 'cedar', 'delta', 'ember', 'fjord'];

/** @param {string[]} list */
const pick = (list) => list[crypto.getRandomValues(new Uint32Array(1))[0] % list.length];

function randomRoom() {
  const n = crypto.getRandomValues(new Uint32Array(1))[0] % 10000;
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${String(n).padStart(4, '0')}`;
}

/**
 * What the user typed, made into a valid room name ("Team Sync!" -> "Team-Sync").
 * @param {string} raw
 */
function slug(raw) {
  return raw
    .trim()
    .replace(/\s+/g, '-')
    .replace(/[^A-Za-z0-9_.-]/g, '')
    .slice(0, 64);
}

renderIcons();

const roomInput = /** @type {HTMLInputElement} */ ($('#room-input'));
const nameInput = /** @type {HTMLInputElement} */ ($('#lobby-name'));
const inviteLink = /** @type {HTMLAnchorElement} */ ($('#invite-link'));
const ready = $('#room-ready');
const params = new URLSearchParams(location.search);
const token = params.get('token');
let room = '';

if (params.get('room')) roomInput.value = params.get('room') || '';
nameInput.value = defaultName();

/** @param {string} r */
function roomUrl(r) {
  const u = new URL(`/r/${encodeURIComponent(r)}`, location.origin);
  if (token) u.searchParams.set('token', token);
  return u.href;
}

$('#create-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const typed = roomInput.value;
  const r = typed.trim() ? slug(typed) : randomRoom();
  if (!ROOM_RE.test(r)) {
    roomInput.setAttribute('aria-invalid', 'true');
    $('#room-hint').textContent = 'That name has no usable characters: use letters, digits, “-”, “_” or “.”.';
    roomInput.focus();
    return;
  }
  roomInput.removeAttribute('aria-invalid');
  roomInput.value = r;
  room = r;
  const url = roomUrl(r);
  inviteLink.href = url;
  inviteLink.textContent = url;
  ready.hidden = false;
  $('#create-room').classList.remove('primary'); // the next step is joining
  nameInput.focus();
  nameInput.select();
});

$('#copy-invite').addEventListener('click', async () => {
  const ok = await copyText(inviteLink.href);
  toast(ok ? 'Invite link copied' : 'Could not copy; select the link and copy it', { kind: ok ? 'ok' : 'warn' });
});

$('#join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!room) return;
  const name = cleanName(nameInput.value);
  if (!name) {
    nameInput.setAttribute('aria-invalid', 'true');
    nameInput.focus();
    return;
  }
  rememberName(name);
  const u = new URL(roomUrl(room));
  u.searchParams.set('name', name);
  location.href = u.href;
});

nameInput.addEventListener('input', () => nameInput.removeAttribute('aria-invalid'));
roomInput.addEventListener('input', () => roomInput.removeAttribute('aria-invalid'));
