// Text chat: messages go to every peer over the data channels (the SDK's `send`); the
// log shows the sender's name and the text, own messages included, plus join/leave notes.

import { el } from './ui.js';

/**
 * @typedef {object} ChatMessage
 * @property {'chat'} t
 * @property {string} id
 * @property {string} text
 * @property {string} name
 * @property {number} ts
 */

const MAX_TEXT = 2000;
const URL_RE = /\bhttps?:\/\/[^\s<>"']+/g;

/**
 * Text with http(s) links made clickable (no HTML parsing of the text).
 * @param {string} text
 */
function linkify(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    const i = /** @type {number} */ (m.index);
    if (i > last) frag.append(text.slice(last, i));
    frag.append(el('a', { href: m[0], target: '_blank', rel: 'noopener noreferrer', text: m[0] }));
    last = i + m[0].length;
  }
  if (last < text.length) frag.append(text.slice(last));
  return frag;
}

/** @param {number} ts */
function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export class Chat {
  /**
   * @param {{send: (msg: ChatMessage) => void, ownName: () => string, onIncoming: () => void}} hooks
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.log = /** @type {HTMLOListElement} */ (document.getElementById('chat-log'));
    this.input = /** @type {HTMLInputElement} */ (document.getElementById('chat-input'));
    this.form = /** @type {HTMLFormElement} */ (document.getElementById('chat-form'));
    /** @type {Set<string>} */
    this.seen = new Set();
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.submit();
    });
  }

  submit() {
    const text = this.input.value.trim().slice(0, MAX_TEXT);
    if (!text) return;
    /** @type {ChatMessage} */
    const msg = { t: 'chat', id: crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2), text, name: this.hooks.ownName(), ts: Date.now() };
    this.hooks.send(msg);
    this.add(msg, { own: true });
    this.input.value = '';
    this.input.focus();
  }

  /**
   * A message from a peer (data already checked to be a chat message).
   * @param {any} data
   * @param {string} senderName name the server knows the sender by
   */
  receive(data, senderName) {
    if (typeof data.text !== 'string' || !data.text) return;
    const msg = {
      t: /** @type {const} */ ('chat'),
      id: String(data.id || ''),
      text: data.text.slice(0, MAX_TEXT),
      name: senderName || String(data.name || 'Guest'),
      ts: Date.now(),
    };
    if (msg.id && this.seen.has(msg.id)) return;
    this.add(msg, { own: false });
    this.hooks.onIncoming();
  }

  /**
   * @param {ChatMessage} msg
   * @param {{own: boolean}} opts
   */
  add(msg, opts) {
    if (msg.id) this.seen.add(msg.id);
    this.log.querySelector('.chat-empty')?.remove();
    const li = el(`li.chat-msg${opts.own ? '.own' : ''}`, {}, [
      el('div.chat-meta', {}, [
        el('span.chat-name', { text: msg.name }),
        opts.own ? el('span.chat-you', { text: '(you)' }) : null,
        el('time', { datetime: new Date(msg.ts).toISOString(), text: clock(msg.ts) }),
      ]),
      el('div.chat-text', {}, [linkify(msg.text)]),
    ]);
    this.#append(li);
  }

  /**
   * A system line ("Bob joined").
   * @param {string} text
   */
  note(text) {
    this.log.querySelector('.chat-empty')?.remove();
    this.#append(el('li.chat-event', { text }));
  }

  /** @param {HTMLElement} node */
  #append(node) {
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.append(node);
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  }
}
