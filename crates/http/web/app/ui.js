// Small DOM helpers shared by the lobby and the room: elements, toasts, the error banner,
// clipboard, names.

import { icon } from './icons.js';
import { describe } from './messages.js';

/**
 * Create an element.
 * @param {string} tag `tag.class1.class2`
 * @param {Record<string, any>} [attrs] attributes; `text` sets textContent, `html` innerHTML, `on*` listeners
 * @param {(Node|string|null|undefined)[]} [children]
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, children = []) {
  const [name, ...classes] = tag.split('.');
  const node = document.createElement(name || 'div');
  if (classes.length) node.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = String(v);
    else if (k === 'html') node.innerHTML = String(v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/**
 * @param {string} sel
 * @returns {HTMLElement}
 */
export function $(sel) {
  const node = document.querySelector(sel);
  if (!node) throw new Error(`missing element ${sel}`);
  return /** @type {HTMLElement} */ (node);
}

/**
 * A passing notice at the bottom of the screen.
 * @param {string} text
 * @param {{kind?: 'info'|'ok'|'warn'|'error', icon?: string, ms?: number, action?: {label: string, run: () => void}}} [opts]
 */
export function toast(text, opts = {}) {
  let box = document.getElementById('toasts');
  if (!box) {
    box = el('div', { id: 'toasts', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const kind = opts.kind || 'info';
  const ic = opts.icon || (kind === 'ok' ? 'check' : kind === 'info' ? 'info' : 'alert');
  const t = el('div.toast.toast-' + kind, { role: 'status' }, [el('span.toast-icon', { html: icon(ic) }), el('span.toast-text', { text })]);
  if (opts.action) {
    const a = opts.action;
    t.append(
      el('button.btn.btn-small', {
        type: 'button',
        text: a.label,
        onclick: () => {
          a.run();
          dismiss();
        },
      }),
    );
  }
  box.append(t);
  requestAnimationFrame(() => t.classList.add('show'));
  const dismiss = () => {
    t.classList.remove('show');
    setTimeout(() => t.remove(), 250);
  };
  setTimeout(dismiss, opts.ms || 4000);
  return dismiss;
}

/**
 * @typedef {object} BannerAction
 * @property {string} label
 * @property {() => void} run
 * @property {boolean} [primary]
 */

/**
 * Show the error banner `#error` with `data-code` = code.
 * @param {string} code
 * @param {{reason?: string, actions?: BannerAction[], detail?: string, dismissable?: boolean}} [opts]
 */
export function showError(code, opts = {}) {
  const box = $('#error');
  const d = describe(code, opts.reason);
  box.setAttribute('data-code', code);
  box.dataset.kind = d.kind;
  box.innerHTML = '';
  const body = el('div.banner-body', {}, [
    el('strong.banner-title', { text: d.title }),
    el('span.banner-text', { text: d.text }),
    opts.detail ? el('span.banner-detail', { text: opts.detail }) : null,
  ]);
  const actions = el('div.banner-actions');
  for (const a of opts.actions || []) {
    actions.append(el('button.btn.btn-small' + (a.primary ? '.primary' : ''), { type: 'button', text: a.label, onclick: a.run }));
  }
  if (opts.dismissable) {
    actions.append(
      el('button.icon-btn.banner-close', { type: 'button', title: 'Dismiss', 'aria-label': 'Dismiss', html: icon('x'), onclick: () => clearError(code) }),
    );
  }
  box.append(el('span.banner-icon', { html: icon(d.kind === 'warn' ? 'info' : 'alert') }), body, actions);
  box.hidden = false;
}

/**
 * Hide the error banner (only if it shows `code`, when given).
 * @param {string} [code]
 */
export function clearError(code) {
  const box = document.getElementById('error');
  if (!box || box.hidden) return;
  if (code && box.getAttribute('data-code') !== code) return;
  box.hidden = true;
  box.removeAttribute('data-code');
}

/** The error code shown, or null. */
export function shownError() {
  const box = document.getElementById('error');
  return box && !box.hidden ? box.getAttribute('data-code') : null;
}

/**
 * Copy text to the clipboard (falls back to a hidden textarea).
 * @param {string} text
 * @returns {Promise<boolean>}
 */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall through */
  }
  const ta = /** @type {HTMLTextAreaElement} */ (el('textarea', { readonly: true, style: 'position:fixed;opacity:0;top:0;left:0' }));
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

const NAME_KEY = 'switchboard.name';

/** The remembered display name, or "Guest 1234". */
export function defaultName() {
  let saved = '';
  try {
    saved = localStorage.getItem(NAME_KEY) || '';
  } catch {
    /* storage disabled */
  }
  return saved || `Guest ${1000 + Math.floor(Math.random() * 9000)}`;
}

/** @param {string} name */
export function rememberName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    /* storage disabled */
  }
}

/**
 * A display name cleaned for the protocol (1-64 characters).
 * @param {string} name
 */
export function cleanName(name) {
  return [...String(name || '').replace(/\s+/g, ' ').trim()].slice(0, 64).join('');
}

/** Room names the server accepts. */
export const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Initials for an avatar.
 * @param {string} name
 */
export function initials(name) {
  const parts = cleanName(name).split(' ').filter(Boolean);
  if (parts.length === 0) return '?';
  const first = [...parts[0]][0] || '';
  const last = parts.length > 1 ? [...parts[parts.length - 1]][0] || '' : '';
  return (first + last).toUpperCase();
}

/**
 * A stable hue for a name (avatar colours).
 * @param {string} s
 */
export function hue(s) {
  let h = 0;
  for (const ch of String(s)) h = (h * 31 + (ch.codePointAt(0) || 0)) % 360;
  return h;
}
