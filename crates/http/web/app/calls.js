// Direct calls in the lobby (docs/sdk.md "Direct calls", "Web app conventions"): sign in to a line (a user name;
// `?token=` with room tokens, a password with configured users), call someone by address,
// answer or refuse incoming calls, and talk in a call view built from the room page's tiles.
// The line lives in this page, so the call view is here too: leaving the page signs out.
//
// Query parameters: user (sign in at once as this user), name (display name), token.
// Test hook: window.sbApp = { line, call, sb (the call room's session), ready }.

import { Switchboard } from '/sdk/switchboard.js';
import { renderIcons, icon } from './icons.js';
import { $, toast, cleanName, defaultName, rememberName } from './ui.js';
import { Grid, installAutoplayUnlock } from './tiles.js';
import { LocalMedia } from './media.js';
import { outcome, partyNote, signInError } from './call-text.js';

const USER_KEY = 'switchboard.user';

/** @type {(v: unknown) => void} */
let resolveReady = () => {};
/** @type {{line: any, call: any, sb: any, ready: Promise<unknown>}} */
const app = { line: null, call: null, sb: null, ready: new Promise((r) => (resolveReady = r)) };
/** @type {any} */ (window).sbApp = app;

const params = new URLSearchParams(location.search);
const token = params.get('token') || '';
const userInput = /** @type {HTMLInputElement} */ ($('#user-input'));
const nameInput = /** @type {HTMLInputElement} */ ($('#user-name'));
const secretInput = /** @type {HTMLInputElement} */ ($('#user-secret'));
const incomingDialog = /** @type {HTMLDialogElement} */ ($('#incoming-dialog'));
const callingDialog = /** @type {HTMLDialogElement} */ ($('#calling-dialog'));

/** The call shown in the call view or the calling dialog. @type {any} */
let current = null;
/** The incoming call the dialog shows. @type {any} */
let ringing = null;
/** Camera and microphone of the current call. @type {LocalMedia|null} */
let media = null;
/** @type {Grid|null} */
let grid = null;

renderIcons();
userInput.value = params.get('user') || storedUser();
nameInput.value = cleanName(params.get('name') || '') || defaultName();
$('#secret-row').hidden = !!token; // a room token is the identity
$('#signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  signIn();
});
$('#sign-out').addEventListener('click', () => signOut());
$('#dial-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  dial();
});
$('#accept-call').addEventListener('click', () => answer('accept'));
$('#decline-call').addEventListener('click', () => answer('declined'));
$('#busy-call').addEventListener('click', () => answer('busy'));
incomingDialog.addEventListener('cancel', (ev) => ev.preventDefault()); // Escape is no answer
callingDialog.addEventListener('cancel', (ev) => {
  ev.preventDefault();
  current?.hangup();
});
$('#cancel-call').addEventListener('click', () => current?.hangup());
$('#hangup').addEventListener('click', () => current?.hangup());
$('#call-invite').addEventListener('click', () => toggleInvite());
$('#invite-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  invite();
});
$('#call-mute').addEventListener('click', () => media && media.setMic(!(media.micOn && media.mic)).catch(() => {}));
$('#call-camera').addEventListener('click', () => media && media.setCam(!(media.camOn && media.cam)).catch(() => {}));
if (params.get('user')) signIn();

function storedUser() {
  try {
    return localStorage.getItem(USER_KEY) || '';
  } catch {
    return '';
  }
}

async function signIn() {
  const user = userInput.value.trim().toLowerCase();
  const name = cleanName(nameInput.value) || user;
  const hint = $('#signin-hint');
  if (!/^[a-z0-9_.-]{1,64}$/.test(user)) {
    userInput.setAttribute('aria-invalid', 'true');
    hint.textContent = 'A user name is 1–64 letters, digits, “-”, “_” or “.”.';
    userInput.focus();
    return;
  }
  userInput.removeAttribute('aria-invalid');
  /** @type {HTMLButtonElement} */ ($('#sign-in')).disabled = true;
  hint.textContent = 'Signing in…';
  try {
    const line = await Switchboard.line({
      user,
      name,
      token: token || undefined,
      secret: secretInput.value || undefined,
      media: () => startMedia(),
      debug: params.has('debug'),
    });
    app.line = line;
    rememberName(name);
    try {
      localStorage.setItem(USER_KEY, user);
    } catch {
      /* storage disabled */
    }
    line.on('incoming', (/** @type {any} */ call) => onIncoming(call));
    line.on('state', (/** @type {string} */ st) => {
      showLineState(st);
      if (st === 'closed' && app.line === line) lineLost();
    });
    $('#signin-form').hidden = true;
    $('#signed-in').hidden = false;
    $('#line-user').textContent = user;
    showLineState(line.state);
    /** @type {HTMLInputElement} */ ($('#call-input')).focus();
    resolveReady(line);
  } catch (err) {
    const e = /** @type {any} */ (err);
    hint.textContent = signInError(String(e?.code || 'unreachable'), String(e?.reason || ''));
    hint.setAttribute('data-code', String(e?.code || 'unreachable'));
  } finally {
    /** @type {HTMLButtonElement} */ ($('#sign-in')).disabled = false;
  }
}

async function signOut() {
  const line = app.line;
  app.line = null;
  $('#signed-in').hidden = true;
  $('#signin-form').hidden = false;
  $('#signin-hint').textContent = 'Signed out.';
  await line?.close().catch(() => {});
}

/** The server ended the line (not a sign-out): back to the sign-in form. */
function lineLost() {
  app.line = null;
  $('#signed-in').hidden = true;
  $('#signin-form').hidden = false;
  $('#signin-hint').textContent = 'You were signed out by the server. Sign in again to be reachable.';
}

/** @param {string} st */
function showLineState(st) {
  const s = $('#line-status');
  s.dataset.state = st;
  s.textContent = { open: 'Signed in', connecting: 'Signing in…', reconnecting: 'Reconnecting…', closed: 'Signed out' }[st] || st;
}

function dial() {
  const input = /** @type {HTMLInputElement} */ ($('#call-input'));
  const to = input.value.trim();
  if (!to || !app.line) {
    input.focus();
    return;
  }
  if (current) {
    toast('Hang up the current call first.', { kind: 'warn' });
    return;
  }
  setOutcome(null);
  const call = app.line.call(to);
  follow(call);
  $('#calling-title').textContent = `Calling ${to}`;
  $('#calling-state').textContent = 'Calling…';
  callingDialog.showModal();
  call.on('ringing', (/** @type {any} */ e) => {
    if (call.state === 'ringing') {
      $('#calling-title').textContent = `Calling ${call.peer}`;
      $('#calling-state').textContent = 'Ringing…';
    } else if (e.to) note(`Ringing ${e.to}…`);
  });
}

/** @param {any} call */
function onIncoming(call) {
  if (ringing) {
    call.decline('busy'); // one ringing call at a time
    return;
  }
  ringing = call;
  const who = call.peerName && call.peerName !== call.peer ? `${call.peerName} (${call.peer})` : call.peer;
  $('#incoming-from').textContent = current ? `${who} is calling you (you are in a call)` : `${who} is calling you`;
  $('#incoming-title').textContent = `Incoming call from ${call.peerName || call.peer}`;
  incomingDialog.showModal();
  call.on('ended', (/** @type {any} */ e) => {
    if (ringing !== call) return;
    ringing = null;
    incomingDialog.close();
    if (!current || current === call) setOutcome(outcome(call, e));
  });
}

/** @param {'accept'|'declined'|'busy'} what */
function answer(what) {
  const call = ringing;
  if (!call) return;
  ringing = null;
  incomingDialog.close();
  if (what !== 'accept') {
    call.decline(what);
    setOutcome({ reason: what, text: what === 'busy' ? `You told ${call.peer} you are busy.` : `You declined the call from ${call.peer}.` });
    return;
  }
  if (current) {
    // Take the new call instead of the one in progress.
    const old = current;
    current = null;
    old.hangup();
    closeCallView();
  }
  setOutcome(null);
  follow(call);
  call.accept();
  showCallView(call);
}

/**
 * Show what happens to `call` (ours: dialed or accepted).
 * @param {any} call
 */
function follow(call) {
  current = call;
  app.call = call;
  call.on('room', (/** @type {any} */ sb) => attachRoom(call, sb));
  call.on('answered', (/** @type {any} */ e) => {
    if (callingDialog.open) callingDialog.close();
    showCallView(call);
    if (e.by && e.by !== call.peer && call.direction === 'outgoing') note(`${e.by} joined the call`);
    else if (e.by && call.direction === 'incoming' && e.by !== app.line?.user && !e.by.startsWith(`${app.line?.user}@`)) note(`${e.by} joined the call`);
  });
  call.on('left', (/** @type {any} */ e) => note(partyNote(e)));
  call.on('error', (/** @type {any} */ err) => toast(`The call refused that: ${err.reason}`, { kind: 'warn' }));
  call.on('ended', (/** @type {any} */ e) => {
    if (current === call) {
      current = null;
      app.call = null;
      closeCallView();
    }
    if (callingDialog.open) callingDialog.close();
    setOutcome(outcome(call, e));
  });
}

/** The call's camera and microphone, opened when a call starts. */
async function startMedia() {
  if (!media) {
    media = new LocalMedia({
      publish: async (kind, track) => {
        if (app.sb) await app.sb.replaceTrack(kind, track);
      },
      onChange: () => showMedia(),
    });
    await media.start();
  }
  showMedia();
  return media.outgoing();
}

function showMedia() {
  if (!media || !grid || !grid.localTile) return;
  const v = media.videoTrack();
  grid.localTile.showLocal(v ? new MediaStream([v]) : null, { mirror: true });
  grid.localTile.setMedia(media.state());
  const muted = !(media.micOn && media.mic);
  const camOff = !(media.camOn && media.cam);
  setCtl('#call-mute', muted, muted ? ['mic-off', 'Unmute', 'Unmute microphone'] : ['mic', 'Mute', 'Mute microphone']);
  setCtl('#call-camera', camOff, camOff ? ['video-off', 'Camera', 'Turn camera on'] : ['video', 'Camera', 'Turn camera off']);
}

/**
 * @param {string} sel
 * @param {boolean} pressed
 * @param {[string, string, string]} look icon, label, title
 */
function setCtl(sel, pressed, [ic, label, title]) {
  const b = $(sel);
  b.setAttribute('aria-pressed', String(pressed));
  b.title = title;
  b.setAttribute('aria-label', title);
  const i = /** @type {HTMLElement} */ (b.querySelector('.ctl-icon'));
  i.dataset.icon = ic;
  i.innerHTML = icon(ic);
  /** @type {HTMLElement} */ (b.querySelector('.ctl-label')).textContent = label;
}

/**
 * The call room's session: tiles for its members and their tracks, as on the room page.
 * @param {any} call
 * @param {any} sb
 */
function attachRoom(call, sb) {
  app.sb = sb;
  const g = ensureGrid();
  const addPeer = (/** @type {any} */ peer) => {
    if (peer.service === 'calls') return null; // the server's calls peer sends no media
    const tile = g.addRemote({ id: peer.id, name: peer.name || 'Guest' });
    tile.setConnState(peer.state);
    for (const st of peer.streams || []) for (const tr of st.getTracks()) tile.addTrack(tr);
    updateCount(sb);
    return tile;
  };
  sb.on('joined', (/** @type {any} */ e) => {
    if (g.localTile) g.localTile.el.dataset.peerId = e.peerId;
    for (const p of e.peers) addPeer(p);
  });
  sb.on('peer-joined', (/** @type {any} */ p) => addPeer(p));
  sb.on('peer-left', (/** @type {any} */ e) => {
    g.remove(e.peer.id);
    updateCount(sb);
  });
  sb.on('track', (/** @type {any} */ e) => (g.get(e.peer.id) || addPeer(e.peer))?.addTrack(e.track));
  sb.on('peer-state', (/** @type {any} */ e) => g.get(e.peer.id)?.setConnState(e.state));
  sb.on('state', (/** @type {string} */ st) => {
    if (current !== call) return;
    const s = $('#call-status');
    s.dataset.state = st;
    s.textContent = { connecting: 'Connecting…', open: call.state === 'answered' ? 'In call' : 'Waiting…', reconnecting: 'Reconnecting…', closed: 'Ended' }[st] || st;
  });
}

/** The grid of the call view, made fresh for each call. */
function ensureGrid() {
  if (grid) return grid;
  const root = $('#call-grid');
  root.replaceChildren();
  grid = new Grid(root);
  installAutoplayUnlock(grid);
  const inner = grid.placeholder.querySelector('.placeholder-inner');
  if (inner) {
    inner.replaceChildren();
    inner.append(Object.assign(document.createElement('strong'), { textContent: 'Connecting the call…' }));
  }
  grid.addLocal(app.line?.name || 'You');
  showMedia();
  return grid;
}

/** @param {any} sb */
function updateCount(sb) {
  const people = [...sb.peers.values()].filter((p) => p.service !== 'calls');
  $('#call-count').textContent = String(people.length + 1);
}

/** @param {any} call */
function showCallView(call) {
  ensureGrid();
  $('#call-title').textContent = call.direction === 'outgoing' ? `Call with ${call.peer}` : `Call with ${call.peerName || call.peer}`;
  const s = $('#call-status');
  s.dataset.state = 'open';
  s.textContent = call.state === 'answered' ? 'In call' : 'Connecting…';
  note('');
  $('#call-view').hidden = false;
  document.body.classList.add('in-call');
  grid?.layout();
}

function closeCallView() {
  $('#call-view').hidden = true;
  document.body.classList.remove('in-call');
  $('#invite-form').hidden = true;
  $('#call-invite').setAttribute('aria-expanded', 'false');
  media?.stopAll();
  media = null;
  grid?.clearRemotes();
  grid = null;
  $('#call-grid').replaceChildren();
  app.sb = null;
}

function toggleInvite() {
  const form = $('#invite-form');
  form.hidden = !form.hidden;
  $('#call-invite').setAttribute('aria-expanded', String(!form.hidden));
  if (!form.hidden) /** @type {HTMLInputElement} */ ($('#invite-input')).focus();
}

function invite() {
  const input = /** @type {HTMLInputElement} */ ($('#invite-input'));
  const to = input.value.trim();
  if (!to || !current) return;
  try {
    current.invite(to);
    input.value = '';
    toggleInvite();
    note(`Inviting ${to}…`);
  } catch (err) {
    toast(String(/** @type {any} */ (err)?.reason || err), { kind: 'warn' });
  }
}

/** @param {string} text */
function note(text) {
  $('#call-note').textContent = text;
}

/** @param {{reason: string, text: string}|null} o */
function setOutcome(o) {
  const box = $('#call-outcome');
  box.textContent = o ? o.text : '';
  if (o) box.setAttribute('data-reason', o.reason);
  else box.removeAttribute('data-reason');
}
