// VoiceLink: the client's side of the avatar's voice. It makes the VoicePlayer the `audio`
// option asks for (re-emitting its events from the client), configures it from each hello
// (asking the server for PCM when Opus cannot be decoded here), feeds it AUDIO messages and
// VOICE_CUT events, drives its timing against the face (playout.js), and says whether the
// avatar carries the voice now ('voiceavailable' / 'voicedegraded'), so a host app knows when
// to mute its own copy of the agent's audio.

import { AudioCodec, encodeSetAudio } from './protocol.js';
import { ConnectionState } from './connection.js';
import { VoicePlayout } from './playout.js';
import { SoundState, VoicePlayer } from './voice.js';

/** The `audio` option's codes on the wire (SUBSCRIBE, SET_AUDIO). */
export const AUDIO_CODES = Object.freeze({ off: AudioCodec.OFF, opus: AudioCodec.OPUS, pcm: AudioCodec.PCM16 });

/** The VoicePlayer events the client re-emits as its own. */
const PLAYER_EVENTS = Object.freeze(['voicestart', 'voicestop', 'voicecut', 'sound']);

/**
 * @typedef {object} VoiceHost the client, through its public members
 * @property {{audio: 'opus'|'pcm'|'off', volume?: number, muted?: boolean,
 *   voice?: import('./voice.js').VoiceOptions, createAudioContext?: () => AudioContext}} options
 *   read live; `audio` is rewritten when the voice must change
 * @property {() => number} now
 * @property {import('./protocol.js').Hello | null | any} hello
 * @property {string} state
 * @property {{send(bytes: Uint8Array): void} | null} transport
 * @property {(event: Event) => boolean} dispatchEvent
 */

export class VoiceLink {
  /** @param {VoiceHost} host */
  constructor(host) {
    this.host = host;
    /** @type {VoicePlayer | null} */
    this.player = null;
    /** Whether the avatar carries the voice now. */
    this.available = false;
    /** When the face is shown and its voice heard. */
    this.playout = new VoicePlayout();
  }

  /** Make (or drop) the VoicePlayer the `audio` option asks for; its events are re-emitted. */
  make() {
    const options = this.host.options;
    if (options.audio === 'off') {
      this.player?.close();
      this.player = null;
      this.check();
      return;
    }
    if (this.player) return;
    const create = options.createAudioContext ?? (() => new AudioContext({ latencyHint: 'interactive' }));
    let context;
    try {
      context = create();
    } catch (err) {
      options.audio = 'off';
      this._emit('error', { reason: `no sound: ${err?.message ?? err}`, fatal: false });
      return;
    }
    const player = new VoicePlayer(context, { volume: options.volume ?? 1, muted: options.muted ?? false, now: this.host.now, ...options.voice });
    for (const type of PLAYER_EVENTS) {
      player.addEventListener(type, (e) => {
        this._emit(type, /** @type {CustomEvent} */ (e).detail);
        if (type === 'sound') this.check();
      });
    }
    this.player = player;
    this._emit('sound', { state: player.soundState, volume: player.volume, muted: player.muted });
  }

  /**
   * Ask for another voice on the running stream (SET_AUDIO); it is also the voice of every
   * reconnect.
   * @param {'opus'|'pcm'|'off'} audio
   */
  setAudio(audio) {
    if (!['opus', 'pcm', 'off'].includes(audio)) throw new RangeError("audio must be 'opus', 'pcm' or 'off'");
    this.host.options.audio = audio;
    this.make();
    const { hello, transport } = this.host;
    if (hello && transport) transport.send(encodeSetAudio(hello.sid, AUDIO_CODES[audio]));
  }

  /**
   * A hello names the stream's voice: configure the player, or ask for PCM if it cannot play Opus.
   * @param {import('./protocol.js').Hello | any} hello
   */
  hello(hello) {
    const player = this.player;
    if (!player) return;
    player.reset();
    const transport = this.host.transport;
    if (hello.audio && !player.configure(hello.audio, hello.audioRate) && transport) {
      this.host.options.audio = 'pcm';
      transport.send(encodeSetAudio(hello.sid, AudioCodec.PCM16));
    }
    this.check();
  }

  /**
   * An AUDIO message of the stream arrived at local `arrivalMs`: play it, and schedule it now
   * (a page that renders slowly still plays on time).
   * @param {import('./protocol.js').AudioResult | any} audio
   * @param {number} arrivalMs
   * @param {import('./jitter.js').JitterBuffer | null} jitter the face's buffer
   */
  audio(audio, arrivalMs, jitter) {
    const player = this.player;
    if (!player || audio.sid !== this.host.hello?.sid) return;
    if (audio.codec === 'opus' && !player.decoder) {
      this._opusFailed();
      return;
    }
    player.push(audio);
    this.playout.noteAudio(arrivalMs, audio.t, jitter);
    this.playout.tick(arrivalMs, player, jitter);
  }

  /**
   * A VOICE_CUT event: drop the voice from stream time `t` up to audio seq `nextSeq`.
   * @param {number} t
   * @param {number} nextSeq
   */
  cut(t, nextSeq) {
    this.player?.cut(t, nextSeq);
  }

  /**
   * A rendered frame at `nowMs`: keep the face late enough for its voice and schedule the voice.
   * @param {number} nowMs
   * @param {import('./jitter.js').JitterBuffer | null} jitter
   */
  tick(nowMs, jitter) {
    this.playout.tick(nowMs, this.player, jitter);
  }

  /** Drop whatever is queued or playing (a disconnect). */
  reset() {
    this.player?.reset();
  }

  /** Re-evaluate whether the avatar carries the voice; emit when that changes. */
  check() {
    const player = this.player;
    let reason = '';
    if (!player || !this.host.hello?.audio) reason = 'no-voice';
    else if (player.soundState !== SoundState.UNLOCKED) reason = 'locked';
    else if (this.host.state !== ConnectionState.ACTIVE) reason = this.host.state;
    const available = reason === '';
    if (available === this.available) return;
    this.available = available;
    this._emit('voiceavailable', { available, reason });
    if (!available) this._emit('voicedegraded', { reason });
  }

  /** The Opus decoder failed (or is gone): ask for PCM instead, once, and say so. */
  _opusFailed() {
    const { options, hello, transport } = this.host;
    if (options.audio === 'pcm' || !transport || !hello) return;
    options.audio = 'pcm';
    transport.send(encodeSetAudio(hello.sid, AudioCodec.PCM16));
    this._emit('error', { reason: 'the Opus decoder failed: asking for PCM', fatal: false });
  }

  _emit(type, detail) {
    this.host.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
