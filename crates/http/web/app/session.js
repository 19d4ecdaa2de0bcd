// The room page's session options from its URL's query (docs/app.md): `token`, `policy=relay`,
// `transport=ws|sse`, `topology=sfu|mesh`, `debug`, and `audio=pcmu|pcma` (send G.711: in a
// room with a phone, the SIP gateway then passes the audio through without transcoding).

/**
 * @param {URLSearchParams} params
 * @returns {Omit<import('/sdk/switchboard.js').SwitchboardOptions, 'room'|'name'>}
 */
export function sessionOptions(params) {
  const t = params.get('transport');
  const topology = params.get('topology') || '';
  const audio = params.get('audio') || '';
  return {
    token: params.get('token') || undefined,
    iceTransportPolicy: params.get('policy') === 'relay' ? 'relay' : 'all',
    transport: t === 'ws' || t === 'sse' ? t : 'auto',
    topology: topology === 'sfu' || topology === 'mesh' ? topology : 'auto',
    debug: params.has('debug'),
    audioCodec: audio === 'pcmu' || audio === 'pcma' ? audio : 'auto',
  };
}
