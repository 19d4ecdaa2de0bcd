// Switchboard SDK: the constructor's options, checked and with their defaults (a bad option
// is a `bad-option` error at once, not a failure later), and the audio codec a page may be
// asked to send: G.711 for rooms with a phone, which the SIP gateway then passes to the
// phone without transcoding (docs/sip.md "When calls are not transcoded").

import { SwitchboardError } from './errors.js';

/** Audio codecs the `audioCodec` option names, by their RTP mime type. */
const AUDIO_CODECS = Object.freeze({ pcmu: 'audio/PCMU', pcma: 'audio/PCMA' });

/** `http(s)://…`: a server base URL. */
const HTTP_URL = /^https?:\/\//i;

/**
 * The server base URLs, without trailing slashes: `urls` (the nodes of a cluster, tried in
 * this order), else `url`, else the page's origin.
 * @param {import('./switchboard.js').SwitchboardOptions} o
 * @returns {string[]}
 */
function serverUrls(o) {
  if (o.urls !== undefined && o.url !== undefined) throw new SwitchboardError('bad-option', 'give options.url or options.urls, not both');
  if (o.urls !== undefined && (!Array.isArray(o.urls) || o.urls.length === 0)) {
    throw new SwitchboardError('bad-option', 'options.urls must be a non-empty array of http(s) URLs');
  }
  const urls = o.urls || [o.url || (typeof location !== 'undefined' ? location.origin : '')];
  for (const url of urls) {
    if (typeof url !== 'string' || !HTTP_URL.test(url)) throw new SwitchboardError('bad-option', `a server URL must be http(s), got "${url}"`);
  }
  return urls.map((url) => url.replace(/\/+$/, ''));
}

/**
 * @param {import('./switchboard.js').SwitchboardOptions} o
 * @returns {{urls: string[], transport: 'auto'|'ws'|'sse', topology: 'auto'|'sfu'|'mesh', iceServers: 'auto'|RTCIceServer[], audioCodec: 'pcmu'|'pcma'|null}}
 */
export function checkOptions(o) {
  if (typeof o.room !== 'string' || o.room === '') throw new SwitchboardError('bad-option', 'options.room is required');
  const urls = serverUrls(o);
  const transport = o.transport || 'auto';
  if (!['auto', 'ws', 'sse'].includes(transport)) throw new SwitchboardError('bad-option', `unknown transport "${transport}"`);
  const topology = o.topology || 'auto';
  if (!['auto', 'sfu', 'mesh'].includes(topology)) throw new SwitchboardError('bad-option', `unknown topology "${topology}"`);
  const iceServers = o.iceServers === undefined ? 'auto' : o.iceServers;
  if (iceServers !== 'auto' && !Array.isArray(iceServers)) throw new SwitchboardError('bad-option', "iceServers must be 'auto' or an array");
  const codec = o.audioCodec === undefined || o.audioCodec === 'auto' ? null : o.audioCodec;
  if (codec !== null && !(codec in AUDIO_CODECS)) throw new SwitchboardError('bad-option', `unknown audioCodec "${codec}" ('auto', 'pcmu' or 'pcma')`);
  const region = o.region ?? null;
  if (region !== null && (typeof region !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(region))) {
    throw new SwitchboardError('bad-option', 'options.region must be 1-64 of A-Za-z0-9_.-');
  }
  return { urls, transport, topology, iceServers, region, audioCodec: /** @type {'pcmu'|'pcma'|null} */ (codec) };
}

/**
 * Make `transceiver` (one we send audio on) offer only `codec`. Only G.711 is offered, not
 * G.711 then Opus: the SFU's answer puts Opus first whenever it is offered. Browsers
 * without `setCodecPreferences`, or without the codec, keep their default (Opus).
 * @param {RTCRtpTransceiver} transceiver
 * @param {'pcmu'|'pcma'|null} codec
 * @param {(...args: unknown[]) => void} log
 */
export function preferAudioCodec(transceiver, codec, log) {
  if (!codec) return;
  const mime = AUDIO_CODECS[codec].toLowerCase();
  const caps = typeof RTCRtpReceiver !== 'undefined' && RTCRtpReceiver.getCapabilities ? RTCRtpReceiver.getCapabilities('audio') : null;
  const wanted = (caps?.codecs || []).filter((c) => c.mimeType.toLowerCase() === mime);
  if (!wanted.length || typeof transceiver.setCodecPreferences !== 'function') {
    log(`audioCodec ${codec}: not supported by this browser, sending its default`);
    return;
  }
  try {
    transceiver.setCodecPreferences(wanted);
  } catch (e) {
    log(`audioCodec ${codec}: setCodecPreferences failed`, e);
  }
}
