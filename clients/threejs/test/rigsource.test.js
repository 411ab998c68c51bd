// RigSource: the rigs option first, then one GET /rigs/{name} per name, then the fallback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RigSource } from '../src/rigsource.js';

const BONES = { channels: [{ name: 'head_yaw', bone: 'Head', axis: 'y' }], bone_drivers: [] };

function fetchOf(responses) {
  const calls = [];
  const impl = async (url, init) => {
    calls.push([url, init.headers]);
    const r = responses.shift();
    if (r instanceof Error) throw r;
    return { ok: r !== null, json: async () => r };
  };
  return { impl, calls };
}

test('fetched once per name, with the token, from the server the client uses', async () => {
  const f = fetchOf([BONES]);
  const src = new RigSource({ rigs: {}, token: 'jwt' }, f.impl);
  assert.deepEqual(await src.get('arkit 52', 'http://h:1/base'), BONES);
  assert.deepEqual(await src.get('arkit 52', 'http://h:1/base'), BONES);
  assert.deepEqual(f.calls, [['http://h:1/base/rigs/arkit%2052', { authorization: 'Bearer jwt' }]]);
});

test('the rigs option wins; a failed fetch falls back (and is not retried); no base, no fetch', async () => {
  const f = fetchOf([null, new Error('offline')]);
  const src = new RigSource({ rigs: { given: BONES }, rigFallback: { missing: BONES } }, f.impl);
  assert.deepEqual(await src.get('given', 'http://h:1'), BONES);
  assert.deepEqual(await src.get('missing', 'http://h:1'), BONES, 'a 404 uses the fallback');
  assert.equal(await src.get('other', 'http://h:1'), null, 'a network error without a fallback: null');
  assert.equal(await src.get('other', 'http://h:1'), null);
  assert.equal(f.calls.length, 2);
  assert.equal(await new RigSource({ rigs: {} }, f.impl).get('x', ''), null);
  assert.equal(f.calls.length, 2);
});
