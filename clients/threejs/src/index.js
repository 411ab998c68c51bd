// Public entry point of the avatar-engine Three.js client.
export { AvatarStreamClient, ConnectionState, FATAL_CLOSE_CODES } from './client.js';
export { RigBinding, findNode, normalizeName } from './binding.js';
export { JitterBuffer, SampleStatus } from './jitter.js';
export { LodBudget } from './budget.js';
export { Backoff } from './backoff.js';
export { WebRTCTransport, WebSocketTransport, httpUrl, streamUrl } from './transports.js';
export * as protocol from './protocol.js';
export { Decoder, ProtocolError } from './protocol.js';
export { VoicePlayer, SoundState, preferredAudio } from './voice.js';
