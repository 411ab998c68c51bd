// Differential test against the Python reference decoder, driven by
// tests/test_codec_differential.py: it writes a .msgs file of mutated messages and the
// Python results as JSON lines, then runs this file with AVATAR_DIFF_MSGS / AVATAR_DIFF_EXPECT.
// Without those variables (a plain `npm test`) the test is skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { Decoder, ProtocolError } from '../src/protocol.js';
import { describe } from './conformance.js';

const msgsPath = process.env.AVATAR_DIFF_MSGS;
const expectPath = process.env.AVATAR_DIFF_EXPECT;

function close(a, e, where) {
  if (typeof a === 'number' && !Number.isFinite(a)) a = String(a); // as the Python side writes it
  if (typeof e === 'number') {
    const ok = a === e || (Number.isNaN(a) && Number.isNaN(e)) || Math.abs(a - e) <= 1e-6 * Math.max(1, Math.abs(e));
    assert.ok(ok, `${where}: ${a} != ${e}`);
  } else if (Array.isArray(e)) {
    assert.equal(a.length, e.length, `${where}: length`);
    e.forEach((x, i) => close(a[i], x, `${where}[${i}]`));
  } else if (e !== null && typeof e === 'object') {
    assert.deepEqual(Object.keys(a).sort(), Object.keys(e).sort(), `${where}: keys`);
    for (const k of Object.keys(e)) close(a[k], e[k], `${where}.${k}`);
  } else {
    assert.equal(a, e, where);
  }
}

test('JS decoder agrees with the Python reference on mutated input', { skip: msgsPath ? false : 'run by tests/test_codec_differential.py, which writes its inputs (AVATAR_DIFF_MSGS)' }, () => {
  const file = new Uint8Array(readFileSync(msgsPath));
  const expected = readFileSync(expectPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  let dec = new Decoder();
  let n = 0;
  for (let pos = 0; pos + 5 <= file.length;) {
    const tag = file[pos];
    const len = file[pos + 1] | (file[pos + 2] << 8) | (file[pos + 3] << 16) | (file[pos + 4] << 24);
    const payload = file.slice(pos + 5, pos + 5 + len);
    pos += 5 + len;
    if (tag === 2) { dec = new Decoder(); continue; }
    let got;
    try {
      got = describe(dec.feed(payload), dec);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      got = { kind: 'error', code: err.code };
    }
    close(got, expected[n], `message ${n}`);
    n += 1;
  }
  assert.equal(n, expected.length);
});
