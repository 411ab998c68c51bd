// VoicePlayout: when the face is shown and its voice is heard, so that the two meet.
//
// The jitter buffer shows the frame of stream time t at local time t + offset + delayMs; the
// voice player schedules a packet of stream time t to be *heard* at that same local time. Sound
// scheduled now is heard `voice.latencyMs` later (the audio output latency plus the player's
// margin), and the first packets of an utterance can arrive later than the frames' fastest path
// (they are due the moment they are made). The face can extrapolate over a late frame, sound
// cannot, so the face waits for its voice:
//
//   face delay >= voice.latencyMs + lateMs     (0 without a voice, or while sound is locked)
//
// `lateMs` is a decaying max of how late audio arrives after the frames' fastest path
// (half-life about 20 s of speech at 50 packets/s), capped at LATE_CAP_MS.
//
// The delay changes only between utterances: a voice that plays is never pulled away from its
// face (an utterance whose first packets came late plays their remainder; the next one starts
// with the longer delay). Pure logic with time as an argument: the client calls noteAudio() for
// every AUDIO message and tick() on every rendered frame and every AUDIO message.

import { SoundState } from './voice.js';

/** The most audio lateness (ms) the face delay covers. */
export const LATE_CAP_MS = 400;
/** Per-packet decay of the lateness max (0.9993^1000 ~ 1/2: 20 s of 20 ms packets). */
export const LATE_DECAY = 0.9993;
/** A face delay differing from the jitter buffer's by no more than this (ms) is left alone. */
export const DELAY_STEP_MS = 5;

/**
 * @typedef {object} PlayoutJitter the part of a JitterBuffer the playout reads and sets
 * @property {number} offset      local ms minus stream ms (NaN before the first frame)
 * @property {number} delayMs     the playout delay in use
 * @property {number} minDelayMs  the floor set by setMinDelay()
 * @property {(ms: number) => void} setMinDelay
 */

/**
 * @typedef {object} PlayoutVoice the part of a VoicePlayer the playout reads and drives
 * @property {string | null | undefined} codec   the stream's voice, null/undefined without one
 * @property {string} soundState                 SoundState
 * @property {number} latencyMs                  output latency + margin; NaN until the context runs
 * @property {boolean} playing                   between 'voicestart' and 'voicestop'
 * @property {(nowMs: number, mapMs: number) => void} tick
 */

export class VoicePlayout {
  constructor() {
    /** How late audio arrives after the frames' fastest path (decaying max, ms). */
    this.lateMs = 0;
  }

  /**
   * An AUDIO message of stream time `t` arrived at local `arrivalMs`: note its lateness against
   * the frames' clock (nothing before the jitter buffer exists).
   * @param {number} arrivalMs
   * @param {number} t
   * @param {PlayoutJitter | null} jitter
   */
  noteAudio(arrivalMs, t, jitter) {
    if (jitter) this.noteLate(arrivalMs - t - jitter.offset);
  }

  /**
   * Fold one lateness measurement (ms) into the decaying max.
   * @param {number} ms
   */
  noteLate(ms) {
    this.lateMs = Math.max(Math.min(ms, LATE_CAP_MS), this.lateMs * LATE_DECAY);
  }

  /**
   * The least playout delay (ms) the face needs for `voice` to be heard with it: its output
   * latency plus the lateness cushion while it can sound, else 0.
   * @param {PlayoutVoice} voice
   * @returns {number}
   */
  faceDelayMs(voice) {
    const voiced = voice.codec && voice.soundState === SoundState.UNLOCKED && !Number.isNaN(voice.latencyMs);
    return voiced ? voice.latencyMs + this.lateMs : 0;
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
    const minDelay = this.faceDelayMs(voice);
    if (Math.abs(minDelay - jitter.minDelayMs) > DELAY_STEP_MS && !voice.playing) jitter.setMinDelay(Math.round(minDelay));
    voice.tick(nowMs, jitter.offset + jitter.delayMs);
  }
}
