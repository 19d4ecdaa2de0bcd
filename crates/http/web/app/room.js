// The room page (/r/<room>): joins with camera and microphone, shows everyone in a grid,
// chat, device picker, screen share and a connection panel per peer. In SFU rooms the tiles
// report their shown size to the SDK (the SFU forwards a fitting layer, nothing for hidden
// tiles), the SFU's active speaker is highlighted, and a speaker view can be turned on.
//
// Query parameters: name (display name; asked for when absent), token (room JWT),
// policy=relay (TURN only), transport=ws|sse|auto, topology=sfu|mesh (a new room's
// topology; default: the server's threshold decides), debug (SDK logs to the console),
// audio=pcmu|pcma (send G.711: a phone in the room then gets it untranscoded; session.js).
// Phone calls (a SIP participant's tile, the dial dialog): sip.js.
// Test hook: window.sbApp = { sb, ready, media, grid, chat, stats, sip }.

import { Switchboard } from '/sdk/switchboard.js';
import { renderIcons, icon } from './icons.js';
import { describe } from './messages.js';
import { $, el, toast, showError, clearError, shownError, copyText, defaultName, rememberName, cleanName, ROOM_RE } from './ui.js';
import { Grid, installAutoplayUnlock } from './tiles.js';
import { StatsMonitor } from './stats.js';
import { LocalMedia, mediaErrorCode } from './media.js';
import { Chat } from './chat.js';
import { SipUi } from './sip.js';
import { sessionOptions } from './session.js';

/** Wait before retrying when the server is unreachable. */
const RETRY_MS = 5000;

/** @type {(v: unknown) => void} */
let resolveReady = () => {};
/** @type {(e: unknown) => void} */
let rejectReady = () => {};
const ready = new Promise((resolve, reject) => {
  resolveReady = resolve;
  rejectReady = reject;
});
ready.catch(() => {}); // a failed join is shown in #error; nobody has to await this

/** @type {{sb: Switchboard|null, ready: Promise<unknown>, media?: LocalMedia, grid?: Grid, chat?: Chat, stats?: StatsMonitor, sip?: SipUi}} */
const app = { sb: null, ready };
/** @type {any} */ (window).sbApp = app;

const params = new URLSearchParams(location.search);
const room = (() => {
  const raw = location.pathname.replace(/^\/r\//, '').replace(/\/+$/, '');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
})();
const inviteUrl = new URL(`/r/${encodeURIComponent(room)}`, location.origin).href;

/** Set once the user left or the session ended for good. */
let ended = false;
/** The room token does not allow sending media (no `publish` grant). */
let receiveOnly = false;
let userLeft = false;
/** @type {ReturnType<typeof setTimeout> | null} */
let retryTimer = null;

renderIcons();
document.title = `${room} · Switchboard`;
$('#room-name').textContent = room;

main().catch((err) => {
  // Last resort: never leave the user with a blank page and an unhandled rejection.
  console.warn('room setup failed', err);
  showError('app-error', {
    detail: String(err && err.message ? err.message : err),
    actions: [{ label: 'Reload', primary: true, run: () => location.reload() }],
  });
});

async function main() {
  const grid = new Grid($('#grid'));
  app.grid = grid;
  installAutoplayUnlock(grid);
  wireChrome();

  if (!ROOM_RE.test(room)) {
    showError('bad-room', { actions: [lobbyAction(true)] });
    setStatus('closed');
    rejectReady(Object.assign(new Error('bad room name'), { code: 'bad-room' }));
    return;
  }

  /** @type {Switchboard|null} */
  let sb = null;
  /** @type {import('./tiles.js').Tile|null} */
  let localTile = null;
  const media = new LocalMedia({
    publish: async (kind, track) => {
      if (sb) await sb.replaceTrack(kind, track);
    },
    onChange: () => onMediaChange(),
  });
  app.media = media;
  const mediaStarted = media.start();

  let name = cleanName(params.get('name') || '');
  if (!name) name = await askName(media, mediaStarted);
  rememberName(name);

  localTile = grid.addLocal(name);
  const self = localTile;
  const mediaError = await mediaStarted;
  if (mediaError) showError(mediaError, { dismissable: true });
  onMediaChange();
  refreshDevices(media);
  navigator.mediaDevices?.addEventListener?.('devicechange', () => refreshDevices(media));

  sb = new Switchboard({ room, name, ...sessionOptions(params) });
  app.sb = sb;
  const stats = new StatsMonitor(() => (sb ? sb.peers.values() : []));
  app.stats = stats;
  const chat = new Chat({
    send: (msg) => {
      if (sb && sb.peers.size) sb.send(msg);
    },
    ownName: () => name,
    onIncoming: () => bumpUnread(),
  });
  app.chat = chat;
  const s = /** @type {Switchboard} */ (sb);
  const sip = (app.sip = new SipUi({ sb: s, remove: (id) => grid.remove(id) }));

  // --- SDK events -------------------------------------------------------------------------

  /** @param {import('/sdk/switchboard.js').Peer} peer */
  const addPeer = (peer) => {
    const tile = grid.addRemote({ id: peer.id, name: peer.name || 'Guest' });
    tile.top.append(stats.panel(peer.id));
    tile.setConnState(peer.state);
    sip.decorate(tile, peer);
    for (const st of peer.streams) for (const tr of st.getTracks()) tile.addTrack(tr);
    applySink(tile.video);
    updateCount();
    return tile;
  };

  grid.onView = (id, size) => s.setView(id, size);
  s.on('joined', (/** @type {any} */ e) => {
    self.el.dataset.peerId = e.peerId;
    showTopology(s.topology);
    if (e.rejoined) {
      const d = describe('bad-resume');
      toast(d.text, { kind: 'warn' });
    }
    for (const p of e.peers) addPeer(p);
    updateCount();
    if (s.grants.length && !s.grants.includes('publish') && (media.mic || media.cam)) {
      // A receive-only token: the others would never get our media.
      receiveOnly = true;
      media.stopAll();
      for (const id of ['#mute', '#camera', '#screen']) /** @type {HTMLButtonElement} */ ($(id)).disabled = true;
      toast('Viewer mode: your invite lets you watch and chat, not send audio or video.', { kind: 'info', ms: 8000 });
    }
  });
  s.on('peer-joined', (/** @type {any} */ peer) => {
    addPeer(peer);
    chat.note(`${peer.name || 'Guest'} joined`);
  });
  s.on('peer-left', (/** @type {any} */ e) => {
    const tile = grid.get(e.peer.id);
    if (!sip.left(e.peer.id)) grid.remove(e.peer.id); // a call's tile says how it ended first
    stats.forget(e.peer.id);
    updateCount();
    if (!ended) {
      const who = e.peer.name || tile?.name || 'Guest';
      chat.note(e.reason === 'timeout' ? `${who} lost the connection` : e.reason === 'kicked' ? `${who} was removed` : `${who} left`);
    }
  });
  s.on('track', (/** @type {any} */ e) => {
    const tile = grid.get(e.peer.id) || addPeer(e.peer);
    tile.addTrack(e.track);
    grid.reportView(tile);
  });
  s.on('track-removed', (/** @type {any} */ e) => grid.get(e.peer.id)?.removeTrack(e.track));
  s.on('topology', (/** @type {any} */ e) => {
    showTopology(e.mode);
    if (e.mode === 'sfu') chat.note(`More people joined: the call now goes through the server (switched in ${(e.switchMs / 1000).toFixed(1)} s)`);
  });
  s.on('speaker', (/** @type {any} */ e) => grid.setSpeaker(e.peer ? e.peer.id : null));
  $('#speaker-view').addEventListener('click', () => {
    const on = !grid.speakerView;
    grid.setSpeakerView(on);
    $('#speaker-view').setAttribute('aria-pressed', String(on));
  });
  s.on('peer-state', (/** @type {any} */ e) => grid.get(e.peer.id)?.setConnState(e.state));
  s.on('channel-open', (/** @type {any} */ e) => {
    try {
      s.send({ t: 'state', ...media.state() }, e.peer.id);
    } catch {
      /* left meanwhile */
    }
  });
  s.on('message', (/** @type {any} */ e) => {
    const data = e.data;
    if (!data || typeof data !== 'object') return;
    if (data.t === 'chat') chat.receive(data, e.peer.name);
    else if (data.t === 'state') grid.get(e.peer.id)?.setMedia({ audio: data.audio !== false, video: data.video !== false, screen: !!data.screen });
  });
  s.on('state', (/** @type {any} */ st) => onState(st));
  s.on('resumed', (/** @type {any} */ e) => {
    toast(e.gap ? 'Reconnected; restoring media connections' : 'Reconnected', { kind: 'ok' });
  });
  s.on('error', (/** @type {any} */ err) => onSdkError(err));

  // --- controls -----------------------------------------------------------------------------

  $('#mute').addEventListener('click', () => guard(media.setMic(!(media.micOn && media.mic)), 'audio'));
  $('#camera').addEventListener('click', () => guard(media.setCam(!(media.camOn && media.cam)), 'video'));
  $('#screen').addEventListener('click', () => {
    if (media.screen) guard(media.stopScreen(), 'screen');
    else guard(media.startScreen(), 'screen');
  });
  $('#leave').addEventListener('click', () => leave());
  $('#rejoin').addEventListener('click', () => location.reload());
  for (const id of ['mic-select', 'camera-select', 'speaker-select']) {
    const sel = /** @type {HTMLSelectElement} */ ($(`#${id}`));
    sel.addEventListener('change', () => {
      const kind = /** @type {'audioinput'|'videoinput'|'audiooutput'} */ (sel.dataset.kind);
      if (kind === 'audiooutput') {
        media.selected.audiooutput = sel.value;
        for (const tile of grid.tiles.values()) applySink(tile.video);
        return;
      }
      guard(media.selectDevice(kind, sel.value), kind === 'audioinput' ? 'audio' : 'video');
    });
  }

  // Speaking indicator from the receivers' audio levels (cheap, no getStats); held for a
  // moment so it does not flicker between syllables.
  /** @type {Map<string, number>} */
  const loudAt = new Map();
  setInterval(() => {
    const now = performance.timeOrigin + performance.now();
    let loudest = null;
    let loudestAt = 0;
    for (const peer of s.peers.values()) {
      // The receiver of this peer's audio (in SFU rooms all peers share one connection).
      const audio = peer.streams.flatMap((st) => st.getAudioTracks());
      const r = peer.pc ? peer.pc.getReceivers().find((x) => x.track && audio.includes(x.track)) : undefined;
      const src = r && typeof r.getSynchronizationSources === 'function' ? r.getSynchronizationSources()[0] : undefined;
      if (src && (src.audioLevel || 0) > 0.05 && now - src.timestamp < 500) loudAt.set(peer.id, now);
      grid.get(peer.id)?.setSpeaking(now - (loudAt.get(peer.id) || 0) < 800);
      if ((loudAt.get(peer.id) || 0) > loudestAt) {
        loudest = peer.id;
        loudestAt = loudAt.get(peer.id) || 0;
      }
    }
    // Mesh rooms have no server-side speaker detection: the last one heard leads.
    if (s.topology === 'mesh' && loudest && now - loudestAt < 800) grid.setSpeaker(loudest);
  }, 150);

  // --- join -----------------------------------------------------------------------------------

  s.publish(media.outgoing());
  stats.start();
  await join(s);

  // -------------------------------------------------------------------------------------------

  function onMediaChange() {
    if (!localTile) return; // still asking for the name
    const st = media.state();
    const v = media.videoTrack();
    const shown = /** @type {MediaStream|null} */ (localTile.video.srcObject);
    const current = shown ? shown.getVideoTracks()[0] || null : null;
    if (current !== v) localTile.showLocal(v ? new MediaStream([v]) : null, { mirror: !media.screen });
    localTile.el.classList.toggle('mirror', !media.screen);
    localTile.setMedia(st);
    setToggle('#mute', !st.audio, {
      on: ['mic', 'Mute', 'Mute microphone'],
      off: ['mic-off', media.mic ? 'Unmute' : 'Mic', media.mic ? 'Unmute microphone' : 'Turn microphone on'],
    });
    setToggle('#camera', !(media.camOn && media.cam), {
      on: ['video', 'Camera', 'Turn camera off'],
      off: ['video-off', 'Camera', 'Turn camera on'],
    });
    setToggle('#screen', !!media.screen, {
      on: ['screen', 'Share', media.canShareScreen ? 'Share your screen' : 'Screen sharing is not available on this device'],
      off: ['screen-off', 'Stop', 'Stop sharing'],
    });
    /** @type {HTMLButtonElement} */ ($('#screen')).disabled = !media.canShareScreen || ended || receiveOnly;
    document.body.classList.toggle('sharing', !!media.screen);
    if (sb && sb.state === 'open') {
      try {
        sb.send({ t: 'state', ...st });
      } catch {
        /* nobody there */
      }
    }
  }

  /**
   * Run a media action; failures become a message.
   * @param {Promise<unknown>} p
   * @param {'audio'|'video'|'screen'|'audioinput'|'videoinput'} what
   */
  function guard(p, what) {
    p.then(() => {
      if (shownError() && ['permission-denied', 'no-devices', 'device-in-use'].includes(/** @type {string} */ (shownError())) && media.mic && media.cam) {
        clearError();
      }
      refreshDevices(media);
    }).catch((err) => {
      onMediaChange();
      if (what === 'screen') {
        const d = describe('screen-failed');
        toast(`${d.title}: ${err && err.message ? err.message : d.text}`, { kind: 'error' });
        return;
      }
      const code = mediaErrorCode(err);
      const d = describe(code);
      toast(`${d.title}. ${code === 'permission-denied' ? 'Allow access in your browser’s site settings.' : d.text}`, { kind: 'error' });
    });
  }

  /** @param {HTMLVideoElement} video */
  function applySink(video) {
    const id = media.selected.audiooutput;
    const v = /** @type {any} */ (video);
    if (typeof v.setSinkId === 'function' && id) v.setSinkId(id).catch(() => {});
  }
}

/**
 * Join, retrying while the server is unreachable.
 * @param {Switchboard} sb
 */
async function join(sb) {
  if (ended) return;
  if (retryTimer) clearTimeout(retryTimer);
  retryTimer = null;
  try {
    const res = await sb.join();
    clearError('unreachable');
    resolveReady(res);
  } catch (err) {
    const e = /** @type {any} */ (err);
    const code = e && e.code ? String(e.code) : 'unreachable';
    if (code === 'unreachable') {
      showError('unreachable', {
        detail: `Retrying every ${RETRY_MS / 1000} s…`,
        actions: [{ label: 'Retry now', primary: true, run: () => join(sb) }],
      });
      setStatus('closed', 'Offline');
      retryTimer = setTimeout(() => join(sb), RETRY_MS);
      return;
    }
    endCall();
    /** @type {import('./ui.js').BannerAction[]} */
    const actions = [lobbyAction(code !== 'room-full')];
    if (code === 'room-full') actions.unshift({ label: 'Try again', primary: true, run: () => location.reload() });
    showError(code, { reason: e.reason, actions });
    rejectReady(err);
  }
}

/** @param {'idle'|'connecting'|'open'|'reconnecting'|'closed'} st */
function onState(st) {
  setStatus(st);
  $('#reconnecting').hidden = st !== 'reconnecting';
  if (st === 'reconnecting') $('#reconnecting-text').textContent = 'The connection to the server was lost. Your call continues while we restore it.';
  if (st === 'closed' && app.sb && app.sb.peerId && !userLeft && !ended) {
    endCall();
    if (!shownError() || ['permission-denied', 'no-devices', 'device-in-use', 'insecure-context'].includes(/** @type {string} */ (shownError()))) {
      showError('disconnected', { actions: [{ label: 'Rejoin', primary: true, run: () => location.reload() }, lobbyAction(false)] });
    }
  }
}

/** @param {any} err a SwitchboardError from the SDK */
function onSdkError(err) {
  const code = String(err.code || 'unknown');
  if (!app.sb || !app.sb.peerId) return; // join failures are handled by join()
  if (err.fatal) {
    endCall();
    showError(code, {
      reason: err.reason,
      actions: [{ label: 'Rejoin', primary: true, run: () => location.reload() }, lobbyAction(false)],
    });
    return;
  }
  if (code === 'server-shutdown') {
    $('#reconnecting-text').textContent = describe(code).text;
    return;
  }
  if (code === 'peer-unreachable' && err.peer) app.grid?.get(err.peer)?.setConnState('unreachable');
  const d = describe(code, err.reason);
  toast(`${d.title}. ${d.text}`, { kind: d.kind === 'transient' ? 'warn' : 'error' });
}

/**
 * @param {string} state
 * @param {string} [text]
 */
function setStatus(state, text) {
  const s = $('#status');
  s.dataset.state = state;
  const kind = app.sb && app.sb.transportKind === 'sse' ? 'EventSource + POST' : 'WebSocket';
  s.textContent = text || { idle: 'Starting…', connecting: 'Connecting…', open: 'Connected', reconnecting: 'Reconnecting…', closed: 'Disconnected' }[state] || state;
  s.title = state === 'open' ? `Signaling over ${kind}` : '';
}

/** The header's mesh/SFU indicator. @param {string} mode */
function showTopology(mode) {
  const t = $('#topology');
  t.dataset.mode = mode;
  t.textContent = mode === 'sfu' ? 'SFU' : 'Mesh';
  t.title = mode === 'sfu' ? 'Through the server: everyone sends once, the server forwards' : 'Peer-to-peer: everyone sends to everyone';
}

function updateCount() {
  const n = (app.sb ? app.sb.peers.size : 0) + 1;
  $('#participant-count').textContent = String(n);
}

let unread = 0;
function bumpUnread() {
  const sidebarVisible = !document.body.classList.contains('chat-hidden') && !window.matchMedia('(max-width: 720px)').matches;
  if (sidebarVisible) return;
  unread++;
  const b = $('#chat-badge');
  b.textContent = String(unread);
  b.hidden = false;
}

/** Buttons that do not need the SDK: copy link, chat toggle, settings. */
function wireChrome() {
  const copy = async () => {
    const ok = await copyText(inviteUrl);
    toast(ok ? 'Invite link copied' : `Copy this link: ${inviteUrl}`, { kind: ok ? 'ok' : 'warn', ms: ok ? 2500 : 8000 });
  };
  $('#copy-link').addEventListener('click', copy);
  $('#grid').addEventListener('click', (ev) => {
    if (/** @type {HTMLElement} */ (ev.target).closest('[data-action="copy-link"]')) copy();
  });
  const toggleChat = () => {
    if (window.matchMedia('(max-width: 720px)').matches) {
      $('#sidebar').scrollIntoView({ behavior: 'smooth', block: 'end' });
      /** @type {HTMLInputElement} */ ($('#chat-input')).focus({ preventScroll: true });
    } else {
      const hidden = document.body.classList.toggle('chat-hidden');
      $('#chat-toggle').setAttribute('aria-pressed', String(!hidden));
      app.grid?.layout();
      if (!hidden) /** @type {HTMLInputElement} */ ($('#chat-input')).focus();
    }
    unread = 0;
    $('#chat-badge').hidden = true;
  };
  $('#chat-toggle').addEventListener('click', toggleChat);
  $('#chat-close').addEventListener('click', toggleChat);
  const settings = $('#settings-toggle');
  settings.addEventListener('click', () => {
    const open = $('#devices').classList.toggle('open');
    settings.setAttribute('aria-expanded', String(open));
  });
  document.addEventListener('click', (ev) => {
    const t = /** @type {HTMLElement} */ (ev.target);
    if (!t.closest('#devices') && !t.closest('#settings-toggle')) {
      $('#devices').classList.remove('open');
      settings.setAttribute('aria-expanded', 'false');
    }
  });
}

/**
 * @param {string} sel
 * @param {boolean} pressed
 * @param {{on: [string, string, string], off: [string, string, string]}} looks [icon, label, title]: `on` when not pressed, `off` when pressed
 */
function setToggle(sel, pressed, looks) {
  const b = $(sel);
  const [ic, label, title] = pressed ? looks.off : looks.on;
  b.setAttribute('aria-pressed', String(pressed));
  b.title = title;
  b.setAttribute('aria-label', title);
  const iconEl = /** @type {HTMLElement} */ (b.querySelector('.ctl-icon'));
  if (iconEl.dataset.icon !== ic) {
    iconEl.dataset.icon = ic;
    iconEl.innerHTML = icon(ic);
  }
  /** @type {HTMLElement} */ (b.querySelector('.ctl-label')).textContent = label;
}

/** @param {LocalMedia} media */
async function refreshDevices(media) {
  let list;
  try {
    list = await media.devices();
  } catch {
    return;
  }
  /** @type {[string, 'audioinput'|'videoinput'|'audiooutput', string][]} */
  const sels = [
    ['#mic-select', 'audioinput', 'Default microphone'],
    ['#camera-select', 'videoinput', 'Default camera'],
    ['#speaker-select', 'audiooutput', 'Default speaker'],
  ];
  for (const [sel, kind, none] of sels) {
    const select = /** @type {HTMLSelectElement} */ ($(sel));
    const opts = list[kind];
    select.replaceChildren(...(opts.length ? opts.map((o) => el('option', { value: o.deviceId, text: o.label })) : [el('option', { value: '', text: none })]));
    const want = media.selected[kind];
    if (want && opts.some((o) => o.deviceId === want)) select.value = want;
    select.disabled = opts.length === 0;
  }
  const canPickSpeaker = 'setSinkId' in HTMLMediaElement.prototype && list.audiooutput.length > 0;
  $('#speaker-device').hidden = !canPickSpeaker;
}

/**
 * The name dialog (no ?name=): prefilled, with a camera preview.
 * @param {LocalMedia} media
 * @param {Promise<string|null>} mediaStarted
 * @returns {Promise<string>}
 */
function askName(media, mediaStarted) {
  const dlg = /** @type {HTMLDialogElement} */ ($('#name-dialog'));
  const input = /** @type {HTMLInputElement} */ ($('#name-input'));
  const preview = /** @type {HTMLVideoElement} */ ($('#preview-video'));
  $('#name-room').textContent = room;
  input.value = defaultName();
  mediaStarted.then((err) => {
    const v = media.videoTrack();
    if (v) {
      preview.srcObject = new MediaStream([v]);
      preview.play().catch(() => {});
      $('#preview').classList.add('live');
    } else {
      /** @type {HTMLElement} */ ($('#preview .preview-off')).textContent = err ? describe(err).title : 'Camera off';
    }
  });
  dlg.showModal();
  input.select();
  return new Promise((resolve) => {
    dlg.addEventListener('cancel', (ev) => ev.preventDefault()); // a name is needed
    $('#name-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = cleanName(input.value);
      if (!name) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      preview.srcObject = null;
      dlg.close();
      resolve(name);
    });
  });
}

/** The call is over (left, refused or ended by the server): release camera and mic. */
function endCall() {
  ended = true;
  if (retryTimer) clearTimeout(retryTimer);
  retryTimer = null;
  app.stats?.stop();
  app.media?.stopAll();
  app.sip?.close();
  if (app.grid) {
    app.grid.ended = true;
    app.grid.clearRemotes();
  }
  document.body.classList.add('call-ended');
  for (const id of ['#mute', '#camera', '#screen']) /** @type {HTMLButtonElement} */ ($(id)).disabled = true;
  $('#reconnecting').hidden = true;
  $('#participant-count').textContent = '1';
}

async function leave() {
  if (userLeft) return;
  userLeft = true;
  endCall();
  clearError();
  $('#left-screen').hidden = false;
  document.body.classList.add('has-left');
  setStatus('closed', 'Left');
  try {
    await app.sb?.leave();
  } catch {
    /* closing anyway */
  }
}

/**
 * @param {boolean} primary
 * @returns {import('./ui.js').BannerAction}
 */
function lobbyAction(primary) {
  return {
    label: 'Back to lobby',
    primary,
    run: () => {
      location.href = '/';
    },
  };
}
