// Conformance vectors (tests/vectors) through the JS decoder, with node's own test runner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

import {
  Decoder, ProtocolError, Op, Mode, AudioCodec, EventKind, encodeControl, encodeSubscribe,
  encodeSetAudio, encodePing, encodePong, encodePublishHello, encodeCapture,
} from '../src/protocol.js';
import { describe, toHex } from './conformance.js';

const here = dirname(fileURLToPath(import.meta.url));
const vectors = join(here, '..', '..', '..', 'tests', 'vectors');
const names = readdirSync(vectors).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();

const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));

function close(actual, expected, where) {
  if (typeof expected === 'number' && !Number.isInteger(expected)) {
    assert.ok(Math.abs(actual - expected) <= 1e-6, `${where}: ${actual} != ${expected}`);
  } else if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${where}: not an array`);
    assert.equal(actual.length, expected.length, `${where}: length`);
    expected.forEach((e, i) => close(actual[i], e, `${where}[${i}]`));
  } else if (expected !== null && typeof expected === 'object') {
    assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${where}: keys`);
    for (const k of Object.keys(expected)) close(actual[k], expected[k], `${where}.${k}`);
  } else if (typeof expected === 'number') {
    assert.ok(Math.abs(actual - expected) <= 1e-6, `${where}: ${actual} != ${expected}`);
  } else {
    assert.equal(actual, expected, where);
  }
}

for (const name of names) {
  test(`vector ${name}`, () => {
    const doc = JSON.parse(readFileSync(join(vectors, `${name}.json`), 'utf8'));
    const dec = new Decoder();
    doc.steps.forEach((step, i) => {
      if (step.expect_lod) {
        dec.expectLod(step.expect_lod.sid, step.expect_lod.lod);
        return;
      }
      let got;
      try {
        got = describe(dec.feed(hex(step.hex)), dec);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        got = { kind: 'error', code: err.code };
      }
      close(got, step.expect, `${name}[${i}]`);
    });
  });
}

test('viewer and publisher messages match the Python encoder byte for byte', () => {
  const doc = JSON.parse(readFileSync(join(vectors, 'messages.json'), 'utf8'));
  const sent = new Set(doc.steps.filter((s) => s.hex).map((s) => s.hex));
  for (const bytes of [
    encodeSubscribe('alice', 1, Mode.KEYFRAME, 16),
    encodeControl(Op.UNSUBSCRIBE, 7),
    encodeControl(Op.SET_LOD, 7, 2),
    encodeControl(Op.REQUEST_KEYFRAME, 7, 2),
    encodeControl(Op.ACK, 7, 2, 65535),
    encodePing(123456789, 1000),
    encodePong(123456789, 1003),
    encodePublishHello(3, ['eyeBlinkLeft', 'eyeLookDownLeft', 'eyeLookInLeft', 'eyeLookOutLeft'], ['HeadYaw'], 60),
    encodeCapture(3, 1, 16, new Float32Array([0.0, 0.25, 0.5, 1.0, -0.125])),
    encodeCapture(4, 9, 33, { jawOpen: 0.5, eyeBlinkLeft: 1.0 }),
  ]) {
    assert.ok(sent.has(toHex(bytes)), `not in the vector: ${toHex(bytes)}`);
  }
});

test('voice choices (v1.1) match the Python encoder byte for byte', () => {
  const doc = JSON.parse(readFileSync(join(vectors, 'audio.json'), 'utf8'));
  const sent = new Set(doc.steps.filter((s) => s.hex).map((s) => s.hex));
  for (const bytes of [
    encodeSubscribe('alice', 0, Mode.CHAINED, 8, AudioCodec.OPUS),
    encodeSubscribe('alice', 2, Mode.KEYFRAME, 8, AudioCodec.PCM16),
    encodeSubscribe('alice', 0, Mode.CHAINED, 8, AudioCodec.OFF),
    encodeSetAudio(7, AudioCodec.OFF),
    encodeSetAudio(7, AudioCodec.OPUS),
    encodeControl(Op.SET_AUDIO, 7, AudioCodec.PCM16),
  ]) {
    assert.ok(sent.has(toHex(bytes)), `not in the vector: ${toHex(bytes)}`);
  }
});

test('audio results carry the hello\'s voice and a payload that outlives the message', () => {
  const doc = JSON.parse(readFileSync(join(vectors, 'audio.json'), 'utf8'));
  const dec = new Decoder();
  const results = doc.steps.filter((s) => s.hex).map((s) => {
    const bytes = hex(s.hex);
    try {
      const r = dec.feed(bytes);
      bytes.fill(0); // a client's receive buffer being reused
      return r;
    } catch (err) {
      return { kind: 'error', code: err.code };
    }
  });
  const hello = results.find((r) => r.kind === 'hello' && r.audio === 'opus');
  assert.deepEqual([hello.minor, hello.audio, hello.audioRate], [1, 'opus', 48000]);
  const plain = results.find((r) => r.kind === 'hello' && r.audio === null);
  assert.deepEqual([plain.minor, plain.audioRate], [0, 0]);
  const first = results.find((r) => r.kind === 'audio');
  assert.deepEqual({ ...first, payload: Array.from(first.payload) },
    { kind: 'audio', sid: 7, seq: 0, t: 0, codec: 'opus', rate: 48000, payload: [0xf8, 0xff, 0xfe] });
  assert.ok(first.payload instanceof Uint8Array);
  const cut = results.find((r) => r.kind === 'event' && r.event === EventKind.VOICE_CUT);
  assert.deepEqual(cut, { kind: 'event', sid: 7, t: 90, event: 3, value: 5 });
});

test('arbitrary bytes never throw anything but ProtocolError', () => {
  let seed = 12345;
  const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  const doc = JSON.parse(readFileSync(join(vectors, 'chained_8bit.json'), 'utf8'));
  const seeds = doc.steps.map((s) => hex(s.hex));
  for (let round = 0; round < 3000; round++) {
    const dec = new Decoder();
    dec.feed(seeds[0]);
    const base = seeds[1 + (round % (seeds.length - 1))].slice();
    const flips = 1 + (rand() % 4);
    for (let f = 0; f < flips; f++) base[rand() % base.length] = rand() & 0xff;
    const cut = rand() % 3 === 0 ? base.subarray(0, rand() % (base.length + 1)) : base;
    try {
      dec.feed(cut);
    } catch (err) {
      assert.ok(err instanceof ProtocolError, String(err));
    }
  }
});
