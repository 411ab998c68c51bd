// Type declarations for the avatar-engine Three.js client (src/index.js).
import type { Object3D, Mesh, Quaternion } from 'three';

// ------------------------------------------------------------------ protocol (src/protocol.js)

export interface LodTable {
  level: number;
  fps: number;
  /** Indices into the rig's morphs (ascending). */
  morphs: number[];
  /** Indices into the rig's channels (ascending). */
  channels: number[];
}

export interface Hello {
  kind: 'hello';
  sid: number;
  rig: string;
  morphNames: string[];
  channelNames: string[];
  lo: number[];
  hi: number[];
  rotScale: number;
  lods: LodTable[];
  bits: 8 | 16;
  mode: 0 | 1;
  keyframeMs: number;
  deadBand: number;
  hold: number;
  /** The sender's minor version (1 for a v1.1 hello with a voice, 0 when absent). */
  minor: number;
  /** The stream's voice (v1.1), null when the hello names none. */
  audio: 'opus' | 'pcm16' | null;
  /** Sample rate of the voice in Hz (48000 opus, 16000 pcm16 by default); 0 without a voice. */
  audioRate: number;
}

/** One packet of a stream's voice (protocol v1.1, docs/protocol.md 3.8). */
export interface AudioResult {
  kind: 'audio';
  sid: number;
  /** u16, counts the stream's audio messages (wraps). */
  seq: number;
  /** Stream time of the first sample, ms (the clock of the frames). */
  t: number;
  codec: 'opus' | 'pcm16';
  rate: number;
  /** One Opus packet, or PCM16 little-endian mono samples; a copy the caller may keep. */
  payload: Uint8Array;
}

/** An EVENT; `event` 3 is VOICE_CUT, whose `value` is the first audio seq after the cut. */
export interface EventResult {
  kind: 'event';
  sid: number;
  t: number;
  event: number;
  value: string | boolean | [string, number] | number;
}

export interface FrameResult {
  kind: 'frame';
  sid: number;
  lod: number;
  seq: number;
  /** Server stream time, ms. */
  t: number;
  keyframe: boolean;
  count: number;
}

export declare class ProtocolError extends Error {
  code: 'malformed' | 'type' | 'limit' | 'version' | 'body' | 'value';
}

export interface DecodedStream {
  hello: Hello;
  /** Every rig morph, rig order, updated in place by each frame. */
  morphs: Float32Array;
  /** Rotation channels (1.0 = the rig's scale_deg degrees). */
  channels: Float32Array;
  lod: number;
}

export declare class Decoder {
  constructor(options?: { maxStreams?: number });
  stream(sid: number): DecodedStream | undefined;
  expectLod(sid: number, lod: number): void;
  /** Decode one message; throws ProtocolError on bad input. */
  feed(data: Uint8Array | ArrayBuffer): Hello | FrameResult | AudioResult | EventResult | { kind: string; [key: string]: unknown };
}

export declare namespace protocol {
  export const PROTOCOL_VERSION: 1;
  export const PROTOCOL_MINOR: 1;
  export const MsgType: Readonly<Record<'HELLO' | 'KEYFRAME' | 'DELTA' | 'EVENT' | 'CONTROL' | 'PING' | 'PONG' | 'ERROR' | 'PUBLISH_HELLO' | 'CAPTURE' | 'AUDIO', number>>;
  export const Op: Readonly<Record<'SUBSCRIBE' | 'UNSUBSCRIBE' | 'SET_LOD' | 'REQUEST_KEYFRAME' | 'ACK' | 'SET_AUDIO', number>>;
  export const Mode: Readonly<{ CHAINED: 0; KEYFRAME: 1 }>;
  export const EventKind: Readonly<{ STATE: 0; SPEAKING: 1; EMOTION: 2; VOICE_CUT: 3 }>;
  /** The voice a subscriber asks for (SUBSCRIBE's 7th element, SET_AUDIO). */
  export const AudioCodec: Readonly<{ OFF: 0; OPUS: 1; PCM16: 2 }>;
  export const AUDIO_PACKET_MS: 20;
  export const SESSION_STATES: readonly string[];
  /** `audio` (an AudioCodec code) adds SUBSCRIBE's v1.1 seventh element; null leaves it out (no voice). */
  export function encodeSubscribe(session: string, lod?: number, mode?: number, bits?: number, audio?: number | null): Uint8Array;
  /** For SET_AUDIO the third argument is the AudioCodec code (or use encodeSetAudio). */
  export function encodeControl(op: number, sid: number, lod?: number, seq?: number): Uint8Array;
  export function encodeSetAudio(sid: number, audio: number): Uint8Array;
  export function encodePing(nonce: number, t: number): Uint8Array;
  export function encodePong(nonce: number, t: number): Uint8Array;
  export function unpack(bytes: Uint8Array): unknown;
  export { Decoder, ProtocolError };
}

// ------------------------------------------------------------------ backoff

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
  /** Fraction of each delay that is random, 0..1. */
  jitter?: number;
  random?: () => number;
}

export declare class Backoff {
  constructor(options?: BackoffOptions);
  readonly initialMs: number;
  readonly maxMs: number;
  attempts: number;
  /** The next delay before jitter (does not count an attempt). */
  peek(): number;
  /** The delay to wait before the next attempt, ms; counts the attempt. */
  next(): number;
  reset(): void;
}

// ------------------------------------------------------------------ jitter buffer

export declare const SampleStatus: Readonly<{
  EMPTY: 'empty';
  HOLD: 'hold';
  INTERPOLATE: 'interpolate';
  EXTRAPOLATE: 'extrapolate';
}>;
export type SampleStatusValue = (typeof SampleStatus)[keyof typeof SampleStatus];

export interface JitterBufferOptions {
  capacity?: number;
  frameIntervalMs?: number;
  /** Playout delay; default one frame interval. */
  delayMs?: number;
  /** Cap on extrapolation past the newest frame; default min(interval, 50 ms). */
  maxExtrapolationMs?: number;
  relax?: number;
}

export declare class JitterBuffer {
  constructor(width: number, options?: JitterBufferOptions);
  readonly width: number;
  readonly count: number;
  /** Local ms minus server ms (fastest path seen, relaxing slowly). */
  readonly offset: number;
  readonly delayMs: number;
  readonly maxExtrapolationMs: number;
  /** About the 95th percentile of how much later than the fastest path frames arrive (ms). */
  readonly lateMs: number;
  readonly newestT: number;
  dropped: number;
  setFrameInterval(ms: number): void;
  reset(): void;
  push(t: number, morphs: ArrayLike<number>, channels: ArrayLike<number>, arrivalMs: number): boolean;
  renderTime(nowMs: number): number;
  sample(nowMs: number, out: Float32Array): SampleStatusValue;
}

// ------------------------------------------------------------------ LOD budget

export interface BudgetOptions {
  minFps?: number;
  maxKbps?: number;
  fpsMargin?: number;
  kbpsHeadroom?: number;
  downAfterMs?: number;
  upAfterMs?: number;
  cooldownMs?: number;
  finestLod?: number;
  coarsestLod?: number;
}

export declare class LodBudget {
  constructor(lod: number, options?: BudgetOptions);
  lod: number;
  finestLod: number;
  coarsestLod: number;
  setLod(lod: number, nowMs: number): void;
  /** Returns the LOD to ask for, or null to stay. */
  update(nowMs: number, measurement: { fps: number; kbps: number }): number | null;
}

// ------------------------------------------------------------------ binding

export interface RigChannel {
  name: string;
  bone: string;
  axis: 'x' | 'y' | 'z';
  scale_deg?: number;
}

export interface RigBoneDriver {
  bone: string;
  axis: 'x' | 'y' | 'z';
  degrees_per_unit: Record<string, number>;
}

/** The part of a rig profile (GET /rigs/{name}) a binding reads. */
export interface RigBones {
  channels?: RigChannel[];
  bone_drivers?: RigBoneDriver[];
}

export declare function normalizeName(name: string): string;
export declare function findNode(root: Object3D, name: string): Object3D | null;

export declare class RigBinding {
  constructor(root: Object3D, schema: { morphNames: string[]; channelNames: string[]; rig?: RigBones | null });
  readonly root: Object3D;
  readonly rig: RigBones | null;
  readonly width: number;
  readonly targets: { mesh: Mesh; src: Int32Array; dst: Int32Array }[];
  readonly unboundMorphs: string[];
  readonly boundMorphs: number;
  readonly missingBones: string[];
  readonly bones: { node: Object3D; rest: Quaternion }[];
  readonly boneNames: string[];
  /** Morphs then channels, rig order. */
  apply(values: ArrayLike<number>): void;
  reset(): void;
}

// ------------------------------------------------------------------ transports

export interface Transport {
  readonly kind: 'webrtc' | 'websocket';
  connect(): Promise<void>;
  send(bytes: Uint8Array): void;
  close(): void;
  onmessage: (bytes: Uint8Array, arrivalMs: number) => void;
  onclose: (info: { code: number; reason: string }) => void;
}

export declare class WebSocketTransport implements Transport {
  constructor(url: string, options?: { WebSocketImpl?: typeof WebSocket; timeoutMs?: number });
  readonly kind: 'websocket';
  connect(): Promise<void>;
  send(bytes: Uint8Array): void;
  close(): void;
  onmessage: (bytes: Uint8Array, arrivalMs: number) => void;
  onclose: (info: { code: number; reason: string }) => void;
}

export declare class WebRTCTransport implements Transport {
  constructor(
    offerUrl: string,
    params: { session: string; lod?: number; bits?: number; token?: string; iceServers?: RTCIceServer[]; timeoutMs?: number; fetchImpl?: typeof fetch },
  );
  static readonly supported: boolean;
  readonly kind: 'webrtc';
  connect(): Promise<void>;
  send(bytes: Uint8Array): void;
  close(): void;
  onmessage: (bytes: Uint8Array, arrivalMs: number) => void;
  onclose: (info: { code: number; reason: string }) => void;
}

export declare function streamUrl(base: string, session: string, options?: { lod?: number; mode?: 'chained' | 'keyframe'; bits?: number; token?: string }): string;
export declare function httpUrl(base: string, path: string): string;

// ------------------------------------------------------------------ client

export type ConnectionStateValue = 'idle' | 'connecting' | 'ready' | 'active' | 'degraded' | 'error' | 'disconnected';
export declare const ConnectionState: Readonly<{
  IDLE: 'idle'; CONNECTING: 'connecting'; READY: 'ready'; ACTIVE: 'active';
  DEGRADED: 'degraded'; ERROR: 'error'; DISCONNECTED: 'disconnected';
}>;
export declare const FATAL_CLOSE_CODES: readonly number[];

export interface ClientOptions {
  transport?: 'auto' | 'webrtc' | 'websocket';
  lod?: number;
  bits?: 8 | 16;
  token?: string;
  iceServers?: RTCIceServer[];
  reconnect?: BackoffOptions;
  rtcRetry?: BackoffOptions;
  budget?: BudgetOptions | false;
  stallMs?: number;
  pingMs?: number;
  rigs?: Record<string, RigBones>;
  rigFallback?: Record<string, RigBones>;
  createTransport?: (kind: 'webrtc' | 'websocket', params: { base: string; session: string; lod: number; bits: number; token: string; audio: AudioChoice }) => Transport;
  now?: () => number;
  fetch?: typeof fetch;
  /** The voice to ask for; default preferredAudio(): 'opus' with WebCodecs, 'pcm' with only WebAudio, 'off' without. */
  audio?: AudioChoice;
  /** Voice volume 0..1 (default 1). */
  volume?: number;
  muted?: boolean;
  voice?: VoiceOptions;
  createAudioContext?: () => AudioContext;
}

export type AudioChoice = 'opus' | 'pcm' | 'off';
export type SoundStateValue = 'locked' | 'unlocked' | 'unavailable';
export declare const SoundState: Readonly<{ LOCKED: 'locked'; UNLOCKED: 'unlocked'; UNAVAILABLE: 'unavailable' }>;
/** The voice this environment can play: 'opus' (WebCodecs), 'pcm' (WebAudio only) or 'off'. */
export declare function preferredAudio(scope?: object): AudioChoice;

export interface VoiceOptions {
  /** Schedule packets this far ahead of their time (default 200 ms). */
  horizonMs?: number;
  /** Back-to-back drift allowed before a run re-anchors on the clock (default 15 ms). */
  toleranceMs?: number;
  /** Packets held (default 100, 2 s). */
  maxQueue?: number;
  jumpMs?: number;
  hangoverMs?: number;
  volume?: number;
  muted?: boolean;
  AudioDecoderImpl?: unknown;
  EncodedAudioChunkImpl?: unknown;
  now?: () => number;
}

export interface VoiceStats {
  packets: number; bytes: number; scheduled: number; late: number; stale: number; overflow: number; lost: number;
  concealedMs: number; reanchors: number; cuts: number; decodeErrors: number; errorMs: number; maxErrorMs: number;
}

export interface VoiceEventMap {
  voicestart: CustomEvent<{ t: number }>;
  voicestop: CustomEvent<{ t: number; reason: 'end' | 'cut' | 'reset' }>;
  voicecut: CustomEvent<{ t: number; nextSeq: number }>;
  sound: CustomEvent<{ state: SoundStateValue; volume: number; muted: boolean }>;
}

/** Plays AUDIO messages through WebAudio on the jitter buffer's playout clock. */
export declare class VoicePlayer extends EventTarget {
  constructor(context: AudioContext, options?: VoiceOptions);
  readonly context: AudioContext;
  /** The gain node everything plays through (tap it to record what is heard). */
  readonly output: GainNode;
  readonly soundState: SoundStateValue;
  readonly playing: boolean;
  /** Sound scheduled or playing: the playout mapping holds while it is. */
  readonly busy: boolean;
  readonly stats: VoiceStats;
  volume: number;
  muted: boolean;
  unlock(): Promise<boolean>;
  configure(codec: 'opus' | 'pcm16' | null, rate: number): boolean;
  push(audio: AudioResult): void;
  cut(t: number, nextSeq: number): void;
  /** `mapMs`: local ms minus stream ms at which the face shows a frame. */
  tick(nowMs: number, mapMs: number): void;
  reset(): void;
  close(): void;
  addEventListener<K extends keyof VoiceEventMap>(type: K, listener: (ev: VoiceEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

export interface ClientStats {
  transport: '' | 'webrtc' | 'websocket';
  state: ConnectionStateValue;
  lod: number;
  renderFps: number;
  kbps: number;
  /** Server timestamp vs arrival, with the clock offset from ping/pong (NaN until a pong). */
  latencyMs: number;
  rttMs: number;
  framesReceived: number;
  framesRendered: number;
  framesSkipped: number;
  framesStale: number;
  keyframesRequested: number;
  protocolErrors: number;
  bytesReceived: number;
  reconnects: number;
  /** Moving averages, microseconds per message / per rendered frame. */
  decodeUs: number;
  applyUs: number;
  sampleStatus: SampleStatusValue;
}

export interface AvatarStreamEventMap {
  state: CustomEvent<{ state: ConnectionStateValue; transport: string }>;
  session: CustomEvent<{ state: string }>;
  speaking: CustomEvent<{ speaking: boolean }>;
  emotion: CustomEvent<{ emotion: string; intensity: number }>;
  hello: CustomEvent<{ hello: Hello }>;
  frame: CustomEvent<FrameResult>;
  transport: CustomEvent<{ transport: 'webrtc' | 'websocket' }>;
  fallback: CustomEvent<{ from: 'webrtc'; to: 'websocket'; reason: string }>;
  reconnect: CustomEvent<{ delay: number; attempt: number; reason: string }>;
  lod: CustomEvent<{ lod: number; user: boolean }>;
  bound: CustomEvent<{ binding: RigBinding }>;
  stats: CustomEvent<ClientStats>;
  error: CustomEvent<{ reason: string; fatal: boolean; code?: number }>;
  voicestart: VoiceEventMap['voicestart'];
  voicestop: VoiceEventMap['voicestop'];
  voicecut: VoiceEventMap['voicecut'];
  sound: VoiceEventMap['sound'];
  /** Whether the avatar carries the voice (stream has one, frames flow, sound unlocked). */
  voiceavailable: CustomEvent<{ available: boolean; reason: string }>;
  /** The avatar stopped carrying the voice: a host app unmutes its own agent audio. */
  voicedegraded: CustomEvent<{ reason: string }>;
}

export declare class AvatarStreamClient extends EventTarget {
  constructor(options?: ClientOptions);
  readonly options: Required<Pick<ClientOptions, 'transport' | 'lod' | 'bits'>> & ClientOptions;
  readonly state: ConnectionStateValue;
  readonly sessionState: string | null;
  readonly speaking: boolean;
  readonly emotion: [string, number] | null;
  readonly lod: number;
  readonly hello: Hello | null;
  readonly helloBytes: Uint8Array | null;
  readonly binding: RigBinding | null;
  readonly jitter: JitterBuffer | null;
  readonly stats: ClientStats;
  readonly transportKind: '' | 'webrtc' | 'websocket';
  /** Server ms minus local ms (NaN until the first pong). */
  readonly clockOffset: number;
  readonly reconnectBackoff: Backoff;
  readonly rtcBackoff: Backoff;
  readonly budget: LodBudget | null;
  /** The last sampled values (morphs then channels, rig order), or null. */
  readonly values: Float32Array | null;
  connect(url: string, session: string, options?: Partial<ClientOptions>): Promise<void>;
  disconnect(): void;
  bind(object3D: Object3D, options?: { rig?: RigBones | null }): Promise<RigBinding | null>;
  unbind(): void;
  /** Call once per rendered frame. */
  update(nowMs?: number): boolean;
  setLod(lod: number, options?: { user?: boolean }): void;
  requestKeyframe(): void;
  /** The voice player (null with audio 'off'). */
  readonly voice: VoicePlayer | null;
  readonly soundState: SoundStateValue;
  readonly voiceAvailable: boolean;
  volume: number;
  muted: boolean;
  /** Call from a user gesture: resumes the AudioContext (the autoplay rule). */
  unlockAudio(): Promise<boolean>;
  /** SET_AUDIO on the running stream; also the voice of every reconnect. */
  setAudio(audio: AudioChoice): void;
  addEventListener<K extends keyof AvatarStreamEventMap>(type: K, listener: (ev: AvatarStreamEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof AvatarStreamEventMap>(type: K, listener: (ev: AvatarStreamEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}
