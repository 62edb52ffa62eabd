// SigV4 (AWS4-HMAC-SHA256) request signing for the console, in the page: the secret key never
// leaves the tab, each request carries only its signature.
//
// Hashing uses Web Crypto where the page has it; a page served over plain HTTP from anything but
// a loopback address is not a secure context and has no `crypto.subtle`, so a small SHA-256 and
// HMAC written here take over, and the console works the same on plain HTTP.
//
// Exposes `window.SigV4`: `sign(request)` returns the headers to send; `selfTest()` checks both
// hash implementations against the AWS SigV4 test suite's `get-vanilla` case.
(function () {
  'use strict';

  const encoder = new TextEncoder();

  function utf8(s) {
    return typeof s === 'string' ? encoder.encode(s) : s;
  }

  function hex(bytes) {
    let out = '';
    for (let i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
    return out;
  }

  // ---- Pure-JS SHA-256 and HMAC (FIPS 180-4, RFC 2104), for pages without Web Crypto. ----

  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  function sha256(data) {
    const msg = utf8(data);
    // The message, a 1 bit, zeros, and the bit length as 64 bits: a whole number of 64-byte blocks.
    const blocks = Math.ceil((msg.length + 9) / 64);
    const buf = new Uint8Array(blocks * 64);
    buf.set(msg);
    buf[msg.length] = 0x80;
    const view = new DataView(buf.buffer);
    const bits = msg.length * 8;
    view.setUint32(buf.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(buf.length - 4, bits >>> 0);

    const h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let off = 0; off < buf.length; off += 64) {
      for (let t = 0; t < 16; t++) w[t] = view.getUint32(off + t * 4);
      for (let t = 16; t < 64; t++) {
        const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
        const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
      for (let t = 0; t < 64; t++) {
        const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        k = g; g = f; f = e; e = (d + t1) | 0;
        d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
    }
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setUint32(i * 4, h[i]);
    return out;
  }

  function hmacSha256(key, data) {
    let k = utf8(key);
    if (k.length > 64) k = sha256(k);
    const inner = new Uint8Array(64);
    const outer = new Uint8Array(64);
    for (let i = 0; i < 64; i++) {
      const b = i < k.length ? k[i] : 0;
      inner[i] = b ^ 0x36;
      outer[i] = b ^ 0x5c;
    }
    const msg = utf8(data);
    const first = new Uint8Array(64 + msg.length);
    first.set(inner);
    first.set(msg, 64);
    const second = new Uint8Array(64 + 32);
    second.set(outer);
    second.set(sha256(first), 64);
    return sha256(second);
  }

  // Both back ends answer promises of Uint8Array, so the signer does not care which it has.
  const pure = {
    name: 'pure-js',
    sha256: (data) => Promise.resolve(sha256(data)),
    hmac: (key, data) => Promise.resolve(hmacSha256(key, data)),
  };

  function webCrypto(subtle) {
    return {
      name: 'web-crypto',
      sha256: async (data) => new Uint8Array(await subtle.digest('SHA-256', utf8(data))),
      hmac: async (key, data) => {
        const k = await subtle.importKey('raw', utf8(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
        return new Uint8Array(await subtle.sign('HMAC', k, utf8(data)));
      },
    };
  }

  const subtle = window.crypto && window.crypto.subtle;
  const native = subtle ? webCrypto(subtle) : null;

  // ---- Canonical request ----

  // RFC 3986 unreserved characters stay, every other byte of the UTF-8 text is %XX (uppercase).
  function uriEncode(s) {
    return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  }

  const UNRESERVED = /[A-Za-z0-9\-_.~]/;

  // One query key or value as the server re-encodes it: `+` is a space, valid `%XX` escapes are
  // bytes (even bytes that are not UTF-8), anything else stays; then every byte but the
  // unreserved ones is `%XX`.
  function reencodeQueryPart(raw) {
    const bytes = utf8(raw.replace(/\+/g, ' '));
    let out = '';
    for (let i = 0; i < bytes.length; i++) {
      let b = bytes[i];
      if (b === 0x25 && i + 2 < bytes.length && isHex(bytes[i + 1]) && isHex(bytes[i + 2])) {
        b = parseInt(String.fromCharCode(bytes[i + 1], bytes[i + 2]), 16);
        i += 2;
      }
      const c = String.fromCharCode(b);
      out += b < 0x80 && UNRESERVED.test(c) ? c : '%' + (b < 16 ? '0' : '') + b.toString(16).toUpperCase();
    }
    return out;
  }

  function isHex(b) {
    return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
  }

  // `path` as it goes on the wire (already percent-encoded). For services other than S3, AWS
  // drops empty and dot segments and encodes each segment once more, so `%` signs as `%25`.
  function canonicalUri(path) {
    if (!path || path === '/') return '/';
    const segments = [];
    for (const s of path.split('/')) {
      if (s === '' || s === '.') continue;
      if (s === '..') segments.pop();
      else segments.push(uriEncode(s));
    }
    let out = '/' + segments.join('/');
    if (path.endsWith('/') && segments.length) out += '/';
    return out;
  }

  // The raw query (no `?`): each key and value decoded then encoded the same strict way, the
  // pairs sorted by key then value.
  function canonicalQuery(query) {
    if (!query) return '';
    const pairs = query
      .split('&')
      .filter((p) => p !== '')
      .map((p) => {
        const i = p.indexOf('=');
        const key = i < 0 ? p : p.slice(0, i);
        const value = i < 0 ? '' : p.slice(i + 1);
        return [reencodeQueryPart(key), reencodeQueryPart(value)];
      });
    pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    return pairs.map((p) => p[0] + '=' + p[1]).join('&');
  }

  function amzDate(date) {
    return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  }

  // Signs one request. `request`: method, url (absolute or relative to the page), headers (an
  // object; all of them are signed), body (string, default empty), accessKeyId, secretAccessKey,
  // region, service, and optionally date (a Date), host (default: the URL's), contentSha256
  // (default true: send and sign X-Amz-Content-SHA256) and crypto (a back end, for tests).
  // Answers the headers to send (without Host, which the browser sets itself).
  async function sign(request) {
    const c = request.crypto || native || pure;
    const url = new URL(request.url, window.location.href);
    const body = request.body || '';
    const stamp = amzDate(request.date || new Date());
    const day = stamp.slice(0, 8);
    const payloadHash = hex(await c.sha256(body));

    const send = {};
    for (const name of Object.keys(request.headers || {})) send[name] = String(request.headers[name]);
    send['X-Amz-Date'] = stamp;
    if (request.contentSha256 !== false) send['X-Amz-Content-SHA256'] = payloadHash;

    const signed = { host: request.host || url.host };
    for (const name of Object.keys(send)) {
      signed[name.toLowerCase()] = send[name].trim().replace(/\s+/g, ' ');
    }
    const names = Object.keys(signed).sort();
    const signedHeaders = names.join(';');
    const canonical = [
      request.method.toUpperCase(),
      canonicalUri(url.pathname),
      canonicalQuery(url.search.replace(/^\?/, '')),
      names.map((n) => n + ':' + signed[n] + '\n').join(''),
      signedHeaders,
      payloadHash,
    ].join('\n');

    const scope = [day, request.region, request.service, 'aws4_request'].join('/');
    const stringToSign = ['AWS4-HMAC-SHA256', stamp, scope, hex(await c.sha256(canonical))].join('\n');
    let key = await c.hmac('AWS4' + request.secretAccessKey, day);
    key = await c.hmac(key, request.region);
    key = await c.hmac(key, request.service);
    key = await c.hmac(key, 'aws4_request');
    const signature = hex(await c.hmac(key, stringToSign));

    send.Authorization =
      'AWS4-HMAC-SHA256 Credential=' + request.accessKeyId + '/' + scope +
      ', SignedHeaders=' + signedHeaders + ', Signature=' + signature;
    return send;
  }

  // The AWS SigV4 test suite's get-vanilla request, signed with each available back end: answers
  // {backEndName: true|false}.
  async function selfTest() {
    const expected = '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31';
    const result = {};
    for (const c of [pure, native].filter(Boolean)) {
      const headers = await sign({
        method: 'GET',
        url: 'https://example.amazonaws.com/',
        host: 'example.amazonaws.com',
        accessKeyId: 'AKIDEXAMPLE',
        secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
        region: 'us-east-1',
        service: 'service',
        date: new Date(Date.UTC(2015, 7, 30, 12, 36, 0)),
        contentSha256: false,
        crypto: c,
      });
      result[c.name] = headers.Authorization.endsWith('Signature=' + expected);
    }
    return result;
  }

  window.SigV4 = {
    sign,
    selfTest,
    canonicalUri,
    canonicalQuery,
    uriEncode,
    backEnd: (native || pure).name,
    pure: { sha256, hmacSha256, hex },
  };
})();
