// Phone calls in the room page (docs/sip.md "For apps"): a "Phone" button in the toolbar
// opens a dialog to dial a number or SIP address into the room; a call is a participant
// (`service: "sip"`) whose tile shows a phone, the call's state, the keys the phone
// pressed, a keypad (DTMF) and a Hang up button. The speaking indicator is the room's
// usual one (the call's audio track is a member's track like any other).
//
// A call that ended keeps its tile a moment after the member left, showing why
// ("Hung up: 486 Busy Here"), so a failed call does not just vanish.
//
// Test hooks: #sip-call, #sip-dialog, #sip-target, #sip-dial; a call's tile is
// `.tile.remote.sip[data-peer-id]` with `.sip-state`, `.sip-keys`, `.sip-hangup`,
// `.sip-keypad-toggle` and `.sip-keypad button[data-key]`.

import { icon } from './icons.js';
import { $, el, toast } from './ui.js';

/** How long the tile of a failed call stays (showing the reason) after the member left. */
const FAILED_LINGER_MS = 5000;
/** The same for a call that ended normally ("Hung up"). */
const ENDED_LINGER_MS = 2000;
/** Keypad layout: 12 phone keys. */
const KEYS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#'];
/** How many received keys a tile shows (the latest). */
const KEYS_SHOWN = 12;

/** @type {Record<string, string>} */
const STATE_TEXT = { dialing: 'Dialing…', ringing: 'Ringing…', connected: 'Connected', held: 'On hold', ended: 'Hung up' };

/**
 * @typedef {object} CallView
 * @property {string} [call] the call's id
 * @property {string} state
 * @property {string} [reason]
 * @property {string[]} keys keys the phone pressed
 * @property {import('./tiles.js').Tile} [tile]
 * @property {HTMLElement} [stateEl]
 * @property {HTMLElement} [keysEl]
 */

export class SipUi {
  /** Calls by member id (state known before or after its tile exists). @type {Map<string, CallView>} */
  calls = new Map();
  /** The call is over for this page: no more dialling. */
  closed = false;

  /**
   * @param {{sb: import('/sdk/switchboard.js').Switchboard, remove: (id: string) => void}} opts
   *   remove: take a call's tile away (after it lingered)
   */
  constructor(opts) {
    this.sb = opts.sb;
    this.remove = opts.remove;
    this.sb.on('sip', (/** @type {any} */ e) => this.#report(e));
    this.button = el('button.ctl', { id: 'sip-call', type: 'button', title: 'Call a phone or SIP address into the room', 'aria-label': 'Call a phone or SIP address' }, [
      el('span.ctl-icon', { html: icon('phone') }),
      el('span.ctl-label', { text: 'Phone' }),
    ]);
    $('.controls-main').insertBefore(this.button, $('#leave'));
    this.input = /** @type {HTMLInputElement} */ (
      el('input', { id: 'sip-target', type: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: '256', placeholder: '+4930123456 or sip:alice@example.com', required: true })
    );
    this.dial = /** @type {HTMLButtonElement} */ (el('button.btn.primary', { id: 'sip-dial', type: 'submit', html: `${icon('phone')}<span>Call</span>` }));
    const form = el('form.stack', { id: 'sip-form', method: 'dialog' }, [
      el('h2', { id: 'sip-title', text: 'Call a phone' }),
      el('p.hint', { text: 'A phone number or SIP address. The call joins this room: everyone hears it, it hears everyone.' }),
      el('label.field-label', { for: 'sip-target', text: 'Number or SIP address' }),
      this.input,
      el('div.row-buttons', {}, [el('button.btn', { type: 'button', text: 'Cancel', onclick: () => this.dialog.close() }), this.dial]),
    ]);
    this.dialog = /** @type {HTMLDialogElement} */ (el('dialog.dialog.sip-dialog', { id: 'sip-dialog', 'aria-labelledby': 'sip-title' }, [form]));
    document.body.append(this.dialog);
    this.button.addEventListener('click', () => this.open());
    form.addEventListener('submit', (ev) => {
      ev.preventDefault(); // Enter in the input submits too
      this.#submit();
    });
  }

  open() {
    if (this.closed) return;
    this.dialog.showModal();
    this.input.select();
  }

  /** The room session ended: no dialling, no dialog. */
  close() {
    this.closed = true;
    this.button.disabled = true;
    if (this.dialog.open) this.dialog.close();
  }

  async #submit() {
    const to = this.input.value.trim();
    if (!to) {
      this.input.setAttribute('aria-invalid', 'true');
      return;
    }
    this.input.removeAttribute('aria-invalid');
    this.dial.disabled = true;
    try {
      await this.sb.sip.call(to);
      this.dialog.close();
      this.input.value = '';
      toast(`Calling ${to}…`, { kind: 'info', icon: 'phone' });
    } catch (err) {
      const e = /** @type {any} */ (err);
      this.dialog.close(); // the toast shows below the modal's backdrop otherwise; the input keeps the text
      toast(`Call to ${to} failed: ${e && e.reason ? e.reason : String(err)}`, { kind: 'error', icon: 'phone', ms: 10000 });
    } finally {
      this.dial.disabled = false;
    }
  }

  /** @param {string} id */
  #view(id) {
    let v = this.calls.get(id);
    if (!v) this.calls.set(id, (v = { state: 'dialing', keys: [] }));
    return v;
  }

  /**
   * A call's member got its tile: make it a phone's.
   * @param {import('./tiles.js').Tile} tile
   * @param {{id: string, service?: string}} peer
   */
  decorate(tile, peer) {
    if (peer.service !== 'sip') return;
    const v = this.#view(peer.id);
    if (v.tile === tile) return;
    v.tile = tile;
    tile.el.classList.add('sip');
    /** @type {HTMLElement} */ (tile.avatar.firstChild).innerHTML = icon('phone', 'sip-avatar-icon');
    tile.nameEl.before(el('span.sip-badge', { title: 'Phone call', html: icon('phone') }));
    v.stateEl = el('span.sip-state', { role: 'status' });
    v.keysEl = el('span.sip-keys');
    const keypad = el('div.sip-keypad', { role: 'group', 'aria-label': 'Keypad' }, KEYS.map((k) => el('button', { type: 'button', 'data-key': k, text: k, onclick: () => this.#press(peer.id, k) })));
    keypad.hidden = true;
    const toggle = el('button.sip-btn.sip-keypad-toggle', {
      type: 'button',
      title: 'Keypad',
      'aria-label': 'Keypad',
      'aria-pressed': 'false',
      html: icon('keypad'),
      onclick: () => {
        keypad.hidden = !keypad.hidden;
        toggle.setAttribute('aria-pressed', String(!keypad.hidden));
      },
    });
    const hangup = el('button.sip-btn.sip-hangup', { type: 'button', title: 'Hang up', 'aria-label': 'Hang up', html: icon('leave'), onclick: () => this.#hangup(peer.id) });
    tile.el.append(el('div.sip-status', {}, [v.stateEl, v.keysEl]), keypad, el('div.sip-controls', {}, [toggle, hangup]));
    this.#render(v);
  }

  /**
   * The member left. Returns true when this module takes the tile away itself (later).
   * @param {string} id
   */
  left(id) {
    const v = this.calls.get(id);
    if (!v) return false;
    this.calls.delete(id);
    if (!v.tile) return false;
    if (v.state !== 'ended') {
      v.state = 'ended'; // the `ended` report was missed: still say so
      this.#render(v);
    }
    setTimeout(() => this.remove(id), v.reason ? FAILED_LINGER_MS : ENDED_LINGER_MS);
    return true;
  }

  /** @param {{peer: string, call?: string, state?: string, reason?: string, dtmf?: string}} e */
  #report(e) {
    const v = this.#view(e.peer);
    if (e.call) v.call = e.call;
    if (e.state) {
      v.state = e.state;
      if (e.reason) v.reason = e.reason;
    }
    if (e.dtmf) v.keys = [...v.keys, e.dtmf].slice(-KEYS_SHOWN);
    this.#render(v);
  }

  /** @param {CallView} v */
  #render(v) {
    if (!v.tile || !v.stateEl || !v.keysEl) return;
    const base = STATE_TEXT[v.state] || v.state;
    v.stateEl.textContent = v.reason ? `${base}: ${v.reason}` : base;
    v.tile.el.dataset.sip = v.state;
    v.tile.el.classList.toggle('sip-failed', !!v.reason);
    v.keysEl.textContent = v.keys.length ? `Keys: ${v.keys.join(' ')}` : '';
    v.keysEl.hidden = v.keys.length === 0;
  }

  /**
   * @param {string} id
   * @param {string} key
   */
  #press(id, key) {
    try {
      this.sb.sip.dtmf(id, key);
    } catch (err) {
      toast(`Key not sent: ${/** @type {any} */ (err).reason || err}`, { kind: 'warn' });
    }
  }

  /** @param {string} id */
  #hangup(id) {
    const v = this.calls.get(id);
    try {
      this.sb.sip.hangup(id);
      if (v && v.stateEl && v.state !== 'ended') v.stateEl.textContent = 'Hanging up…';
    } catch {
      // Already gone from the room: nothing to hang up.
    }
  }
}
