// Compile-only check of the declarations (npm run check:types): typical use must type-check.
import { Group } from 'three';
import { AvatarStreamClient, JitterBuffer, LodBudget, RigBinding, protocol } from '../types/index.js';

const client = new AvatarStreamClient({ transport: 'auto', lod: 1, budget: { minFps: 30 } });
client.addEventListener('state', (e) => console.log(e.detail.state));
client.addEventListener('speaking', (e) => console.log(e.detail.speaking));
await client.connect('http://127.0.0.1:8766', 'demo');
const binding: RigBinding | null = await client.bind(new Group());
client.update(performance.now());
client.setLod(2);
const jb = new JitterBuffer(4, { frameIntervalMs: 1000 / 30 });
jb.push(0, [0, 1], [0, 0], 0);
const out = new Float32Array(4);
const status: 'empty' | 'hold' | 'interpolate' | 'extrapolate' = jb.sample(10, out);
const next: number | null = new LodBudget(0).update(1000, { fps: 60, kbps: 10 });
const ping: Uint8Array = protocol.encodePing(1, 2);
console.log(binding?.boneNames, status, next, ping, client.stats.latencyMs);
client.addEventListener('voicedegraded', (e) => console.log(e.detail.reason));
client.addEventListener('voiceavailable', (e) => { const muteAgent: boolean = e.detail.available; console.log(muteAgent); });
client.volume = 0.5;
const unlocked: Promise<boolean> = client.unlockAudio();
console.log(unlocked, client.soundState === 'locked', client.voice?.stats.concealedMs);
