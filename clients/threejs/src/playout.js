// VoicePlayout: when the face is shown and its voice is heard, so that the two meet.
//
// The jitter buffer shows the frame of stream time t at local time t + offset + delayMs; the
// voice player schedules a packet of stream time t to be *heard* at that same local time. Sound
// scheduled now is heard `voice.latencyMs` later (the audio output latency plus the player's
// margin), so a packet must arrive that long before its local time. The face can extrapolate
// over a late frame, sound cannot, so the face waits for its voice:
//
//   face delay >= max(frame interval + jitter.lateMs,  voice.latencyMs + lateMs)
//                 (0 without a voice, or while sound is locked)
//
// `lateMs` is how late audio arrives after the frames' fastest path: negative when it arrives
// ahead of its time (the server sends an utterance's first packets `delay_ms` ahead, the rest
// up to 250 ms ahead), positive when its first packets come late. Audio arriving early needs no
// extra cushion: the face's delay shrinks by that much, and the voice, on the same clock, is
// heard as soon as it can be played. It is a decaying max (it jumps up to a later arrival at
// once and relaxes toward the current arrivals with a half-life of about 2 s of speech at 50
// packets/s), within +-LATE_CAP_MS. An utterance's first packet sets the delay before it is
// scheduled, so it is never late itself; the memory keeps a cushion for the next utterance
// after packets that came late. The face keeps its own floor: one frame interval plus the
// jitter buffer's estimate of how late frames arrive (its 95th percentile), so that a voice
// arriving early does not leave the face extrapolating past late frames.
//
// The delay changes only between utterances: a voice that plays is never pulled away from its
// face (an utterance whose first packets came late plays their remainder; the next one starts
// with the longer delay), and the first packet of an utterance sets it before it is scheduled.
// Pure logic with time as an argument: the client calls noteAudio() for every AUDIO message and
// tick() on every rendered frame and every AUDIO message.

import { SoundState } from './voice.js';

/** The most audio lateness (ms) the face delay covers, and the most earliness it counts. */
export const LATE_CAP_MS = 400;
/** Per-packet decay of the lateness max toward the current arrival (0.993^100 ~ 1/2: 2 s of 20 ms packets). */
export const LATE_DECAY = 0.993;
/** A face delay differing from the jitter buffer's by no more than this (ms) is left alone. */
export const DELAY_STEP_MS = 5;

/**
 * @typedef {object} PlayoutJitter the part of a JitterBuffer the playout reads and sets
 * @property {number} offset      local ms minus stream ms (NaN before the first frame)
 * @property {number} delayMs     the playout delay in use
 * @property {number} minDelayMs  the floor set by setMinDelay()
 * @property {number} frameIntervalMs  the stream's frame spacing
 * @property {number} lateMs      how late frames arrive after the fastest path (~95th percentile)
 * @property {(ms: number) => void} setMinDelay
 */

/**
 * @typedef {object} PlayoutVoice the part of a VoicePlayer the playout reads and drives
 * @property {string | null | undefined} codec   the stream's voice, null/undefined without one
 * @property {string} soundState                 SoundState
 * @property {number} latencyMs                  output latency + margin; NaN until the context runs
 * @property {boolean} busy                      sound scheduled or playing (the mapping must hold)
 * @property {(nowMs: number, mapMs: number) => void} tick
 */

export class VoicePlayout {
  constructor() {
    /** How late audio arrives after the frames' fastest path (decaying max, ms; negative:
     * early). 0 before any audio: on time until seen otherwise. */
    this.lateMs = 0;
  }

  /**
   * An AUDIO message of stream time `t` arrived at local `arrivalMs`: note its lateness against
   * the frames' clock (nothing before the jitter buffer has a clock offset).
   * @param {number} arrivalMs
   * @param {number} t
   * @param {PlayoutJitter | null} jitter
   */
  noteAudio(arrivalMs, t, jitter) {
    if (jitter && Number.isFinite(jitter.offset)) this.noteLate(arrivalMs - t - jitter.offset);
  }

  /**
   * Fold one lateness measurement (ms; negative: early) into the decaying max.
   * @param {number} ms
   */
  noteLate(ms) {
    const x = Math.max(-LATE_CAP_MS, Math.min(ms, LATE_CAP_MS));
    this.lateMs = Math.max(x, x + (this.lateMs - x) * LATE_DECAY);
  }

  /**
   * The least playout delay (ms) the face needs for `voice` to be heard with it while it can
   * sound (else 0): its output latency plus the audio's lateness (less when audio comes
   * early), but never less than the face's own floor (a frame plus its frames' lateness).
   * @param {PlayoutVoice} voice
   * @param {PlayoutJitter} jitter
   * @returns {number}
   */
  faceDelayMs(voice, jitter) {
    const voiced = voice.codec && voice.soundState === SoundState.UNLOCKED && !Number.isNaN(voice.latencyMs);
    if (!voiced) return 0;
    return Math.max(jitter.frameIntervalMs + jitter.lateMs, voice.latencyMs + this.lateMs);
  }

  /**
   * Keep the face late enough for its voice (between utterances only), then let the voice
   * schedule its packets on the face's clock at `nowMs`.
   * @param {number} nowMs local ms
   * @param {PlayoutVoice | null} voice
   * @param {PlayoutJitter | null} jitter
   */
  tick(nowMs, voice, jitter) {
    if (!voice || !jitter) return;
    const minDelay = this.faceDelayMs(voice, jitter);
    if (Math.abs(minDelay - jitter.minDelayMs) > DELAY_STEP_MS && !voice.busy) jitter.setMinDelay(Math.round(minDelay));
    voice.tick(nowMs, jitter.offset + jitter.delayMs);
  }
}
