// Decode cost per message: protocol.js (its own msgpack reader and frame fast path) against
// @msgpack/msgpack on the same bytes, on the conformance vectors' keyframes and deltas.
//
//   node bench/decode.mjs            (npm i --no-save @msgpack/msgpack to include the comparison)
//
// The @msgpack/msgpack figure only parses the msgpack envelope; protocol.js also unpacks the
// frame body into values, so the comparison favours @msgpack/msgpack.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Decoder, unpack } from '../src/protocol.js';

const here = dirname(fileURLToPath(import.meta.url));
const vector = JSON.parse(readFileSync(join(here, '../../../tests/vectors/chained_8bit.json'), 'utf8'));
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
const msgs = vector.steps.filter((s) => s.expect && ['hello', 'frame'].includes(s.expect.kind)).map((s) => hex(s.hex));
const [hello, ...frames] = msgs;

function bench(name, fn, rounds = 2000) {
  for (let i = 0; i < 50; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) fn();
  const ns = Number(process.hrtime.bigint() - t0) / (rounds * frames.length);
  console.log(`${name.padEnd(44)} ${(ns / 1000).toFixed(3)} us/message`);
  return ns;
}

bench('protocol.js Decoder.feed (decode + values)', () => {
  const dec = new Decoder();
  dec.feed(hello);
  for (const f of frames) dec.feed(f);
});

const kf = frames[0];
const one = new Decoder();
one.feed(hello);
bench('protocol.js: one keyframe again and again', () => {
  for (let i = 0; i < frames.length; i++) one.feed(kf);
});

bench('protocol.js unpack (generic reader, envelope only)', () => {
  for (const f of frames) unpack(f);
});

try {
  const { decode } = await import('@msgpack/msgpack');
  bench('@msgpack/msgpack decode (envelope only)', () => {
    for (const f of frames) decode(f);
  });
  bench('@msgpack/msgpack: one keyframe (envelope only)', () => {
    for (let i = 0; i < frames.length; i++) decode(kf);
  });
} catch {
  console.log('@msgpack/msgpack not installed: npm i --no-save @msgpack/msgpack to compare');
}
