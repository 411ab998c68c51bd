// The avatar's voice (PCM16 AUDIO messages, docs/protocol.md 3.8) played on the face's clock.
//
// Packets are queued as they arrive (the server sends them up to 1 s early). The audio thread
// asks for samples with the stream time the face is showing (the jitter buffer's render time),
// so voice and face share one timeline:
//   - not playing: the first queued packet starts when the render time reaches its t (a late
//     start skips the part already past; a packet entirely in the past is dropped);
//   - playing: contiguous packets (seq + 1, starting where the previous one ends) play back to
//     back, sample-exact; anything else (a lost packet, a new utterance) ends the run and the
//     next packet is anchored again, with silence in between;
//   - VOICE_CUT(t, next_seq): queued packets with t' >= t or seq older than next_seq are
//     dropped and what is playing stops when it reaches t.
// Resampling from the stream's rate (16 kHz) to the output rate is linear. Bounded: at most
// MaxPackets are queued (2 s of 20 ms packets); older ones are dropped and counted.
// Thread-safe (one lock): the network thread pushes, the audio thread reads.
using System;
using System.Collections.Generic;

namespace AvatarEngine.Client
{
    public sealed class VoiceBuffer
    {
        struct Packet
        {
            public int Seq;
            public double T;
            public float[] Samples;
        }

        public const int MaxPackets = 100;
        readonly object gate = new object();
        readonly List<Packet> queue = new List<Packet>();
        int rate = 16000;
        bool playing;
        Packet current;
        double pos;  // input sample position in current
        double cutAtT = double.PositiveInfinity;
        int lastSeq = -1;

        public long PacketsPlayed, PacketsDroppedLate, PacketsDroppedOverflow, PacketsCut;

        /// <summary>True while samples of a packet are being played.</summary>
        public bool Playing { get { lock (gate) return playing; } }

        /// <summary>Packets waiting to play.</summary>
        public int Queued { get { lock (gate) return queue.Count; } }

        /// <summary>A new stream (hello): forget everything, play at sampleRate.</summary>
        public void Configure(int sampleRate)
        {
            lock (gate)
            {
                rate = sampleRate;
                queue.Clear();
                playing = false;
                cutAtT = double.PositiveInfinity;
                lastSeq = -1;
            }
        }

        static bool SeqNewer(int a, int b)
        {
            int d = (a - b) & 0xFFFF;
            return d > 0 && d < 0x8000;
        }

        /// <summary>Queue one PCM16 little-endian packet whose first sample is at stream time t (ms).</summary>
        public void Push(int seq, double t, byte[] pcm16)
        {
            var samples = new float[pcm16.Length / 2];
            for (int i = 0; i < samples.Length; i++) samples[i] = (short)(pcm16[2 * i] | (pcm16[2 * i + 1] << 8)) / 32768f;
            lock (gate)
            {
                if (lastSeq >= 0 && !SeqNewer(seq, lastSeq)) return;  // duplicate or reordered
                lastSeq = seq;
                if (queue.Count >= MaxPackets)
                {
                    queue.RemoveAt(0);
                    PacketsDroppedOverflow += 1;
                }
                queue.Add(new Packet { Seq = seq, T = t, Samples = samples });
            }
        }

        /// <summary>VOICE_CUT: the voice stops at stream time t; packets from nextSeq on are new.</summary>
        public void Cut(double t, int nextSeq)
        {
            lock (gate)
            {
                int before = queue.Count;
                queue.RemoveAll(p => p.T >= t || SeqNewer(nextSeq, p.Seq));
                PacketsCut += before - queue.Count;
                if (playing) cutAtT = t;
            }
        }

        double EndT(Packet p)
        {
            return p.T + p.Samples.Length * 1000.0 / rate;
        }

        /// <summary>Fill data (interleaved, channels per frame, at outputRate) for the block whose
        /// first sample is shown at stream time renderT (ms); NaN renderT plays silence.</summary>
        public void Read(float[] data, int channels, int outputRate, double renderT)
        {
            int frames = data.Length / channels;
            double step = (double)rate / outputRate;
            double msPerFrame = 1000.0 / outputRate;
            lock (gate)
            {
                for (int f = 0; f < frames; f++)
                {
                    float v = 0f;
                    double now = renderT + f * msPerFrame;
                    if (!playing && !double.IsNaN(now)) Anchor(now);
                    if (playing)
                    {
                        double at = current.T + pos * 1000.0 / rate;
                        if (at >= cutAtT)
                        {
                            playing = false;
                            cutAtT = double.PositiveInfinity;
                        }
                        else
                        {
                            int i = (int)pos;
                            float[] s = current.Samples;
                            float a = s[i], b = i + 1 < s.Length ? s[i + 1] : a;
                            v = a + (b - a) * (float)(pos - i);
                            pos += step;
                            if (pos >= s.Length) Advance();
                        }
                    }
                    for (int c = 0; c < channels; c++) data[f * channels + c] = v;
                }
            }
        }

        void Anchor(double now)
        {
            while (queue.Count > 0)
            {
                Packet head = queue[0];
                if (now < head.T) return;
                queue.RemoveAt(0);
                if (now >= EndT(head))
                {
                    PacketsDroppedLate += 1;
                    continue;
                }
                current = head;
                pos = (now - head.T) * rate / 1000.0;
                playing = true;
                PacketsPlayed += 1;
                cutAtT = double.PositiveInfinity;  // a cut applies to the run playing when it came
                return;
            }
        }

        void Advance()
        {
            double end = EndT(current);
            int length = current.Samples.Length;
            if (queue.Count > 0 && queue[0].Seq == ((current.Seq + 1) & 0xFFFF) && Math.Abs(queue[0].T - end) < 1.0)
            {
                pos -= length;
                current = queue[0];
                queue.RemoveAt(0);
                PacketsPlayed += 1;
                return;
            }
            playing = false;
        }
    }
}
