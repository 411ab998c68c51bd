// avatar-engine wire protocol v1.1: a decoder for Unity (C# 7.3, no dependencies, no
// UnityEngine). The normative text is docs/protocol.md; this file follows it section by
// section like the Python (src/avatar_engine/codec), JS (clients/threejs/src/protocol.js) and
// C++ (native/include/avatar_engine/protocol.hpp) decoders, and passes the same conformance
// vectors (tests/vectors, checked under Mono by tests/test_unity_client.py).
//
//   var dec = new Decoder();
//   Result r = dec.Feed(bytes, 0, bytes.Length);
//   if (r.Kind == Kind.Frame) { Stream s = dec.GetStream(r.Sid); /* s.Morphs, s.Channels */ }
//   else if (r.Kind == Kind.NeedKeyframe) send(Encode.Control(Op.RequestKeyframe, r.Sid, r.Lod));
//   else if (r.Kind == Kind.Error) { /* r.Error, r.Detail: the message was dropped */ }
//
// Bad input never throws out of Feed: it yields Kind.Error with a category (malformed, type,
// limit, version, body, value) and leaves every stream untouched. Keyframes and deltas take a
// path that allocates nothing (frames arrive 10-60 times a second, and Unity's GC is not
// generational); other messages are parsed into a small msgpack tree.
using System;
using System.Collections.Generic;

namespace AvatarEngine.Protocol
{
    public enum MsgType { Hello = 0, Keyframe = 1, Delta = 2, Event = 3, Control = 4, Ping = 5, Pong = 6, Error = 7, PublishHello = 8, Capture = 9, Audio = 10 }

    public enum Op { Subscribe = 0, Unsubscribe = 1, SetLod = 2, RequestKeyframe = 3, Ack = 4, SetAudio = 5 }

    public enum EventKind { State = 0, Speaking = 1, Emotion = 2, VoiceCut = 3 }

    /// <summary>Delta modes (hello "mode"): chained for WebSocket, keyframe-relative for lossy transports.</summary>
    public enum Mode { Chained = 0, KeyframeRelative = 1 }

    /// <summary>SUBSCRIBE / SET_AUDIO codes (docs/protocol.md 3.4).</summary>
    public enum AudioRequest { Off = 0, Opus = 1, Pcm16 = 2 }

    /// <summary>The voice a hello announces (its "audio" key); None: the stream has no voice.</summary>
    public enum AudioCodec { None = 0, Opus = 1, Pcm16 = 2 }

    public enum Kind
    {
        Hello, Frame, NeedKeyframe, Stale, UnknownStream, Event, Control, Ping, Pong, ErrorMessage,
        PublishHello, Capture, Audio, Ignored, Error,
    }

    /// <summary>Error categories shared by every decoder (docs/protocol.md 2.3).</summary>
    public enum ErrorCode { None, Malformed, Type, Limit, Version, Body, Value }

    /// <summary>Thrown inside the decoder; Feed turns it into a Kind.Error result.</summary>
    public sealed class ProtocolException : Exception
    {
        public readonly ErrorCode Code;

        public ProtocolException(ErrorCode code, string detail) : base(Limits.ErrorName(code) + ": " + detail)
        {
            Code = code;
        }
    }

    /// <summary>Limits every decoder enforces (docs/protocol.md 2.2).</summary>
    public static class Limits
    {
        public const int Version = 1;
        public const int MaxMessageBytes = 65536;
        public const int MaxMorphs = 1024;
        public const int MaxChannels = 64;
        public const int MaxNameBytes = 256;
        public const int MaxStreams = 256;
        public const int LodLevels = 4;
        public const int MaxEventText = 256;
        public const double F32Max = 3.4028234663852886e38;
        /// <summary>The longest PCM16 payload of one AUDIO message (docs/protocol.md 3.8).</summary>
        public const int AudioPacketMs = 20;
        public const int OpusRate = 48000;
        public const int Pcm16Rate = 16000;
        public const int MinPcm16Rate = 8000;
        public const int MaxPcm16Rate = 48000;

        public static readonly string[] SessionStates =
        {
            "idle", "connecting", "ready", "active", "thinking", "degraded", "error", "disconnected",
        };

        public static string ErrorName(ErrorCode e)
        {
            switch (e)
            {
                case ErrorCode.Malformed: return "malformed";
                case ErrorCode.Type: return "type";
                case ErrorCode.Limit: return "limit";
                case ErrorCode.Version: return "version";
                case ErrorCode.Body: return "body";
                case ErrorCode.Value: return "value";
                default: return "none";
            }
        }
    }

    public sealed class LodTable
    {
        public int Level;
        public int Fps;
        public int[] Morphs;
        public int[] Channels;

        public int Size { get { return Morphs.Length + Channels.Length; } }
    }

    /// <summary>A stream's description (HELLO): names once, then frames carry positions only.</summary>
    public sealed class HelloInfo
    {
        public uint Sid;
        public string Rig;
        public string[] MorphNames;
        public string[] ChannelNames;
        public double[] Lo;
        public double[] Hi;
        public double RotScale = 1.0;
        public LodTable[] Lods;
        public int Bits = 8;
        public int Mode;
        public ulong KeyframeMs = 500;
        public double DeadBand = 1.0;
        public int Hold = 6;
        /// <summary>Protocol minor version (hello key "minor", 0 when absent).</summary>
        public ulong Minor;
        public AudioCodec Audio = AudioCodec.None;
        /// <summary>Sample rate of the voice in Hz (0 without a voice).</summary>
        public int AudioRate;

        /// <summary>The voice's name as in the hello ("opus", "pcm16"), or "" without one.</summary>
        public string AudioName
        {
            get { return Audio == AudioCodec.Opus ? "opus" : Audio == AudioCodec.Pcm16 ? "pcm16" : ""; }
        }
    }

    /// <summary>One stream as a renderer holds it: Morphs (every rig morph, rig order) and
    /// Channels (every rotation channel). Elements outside the current LOD rest at code 0.</summary>
    public sealed class Stream
    {
        public readonly HelloInfo Hello;
        public readonly float[] Morphs;
        public readonly float[] Channels;
        internal readonly int[] Codes, KfCodes, Idx, Scratch;
        public int Lod = -1;
        internal int WantLod = -1;
        internal bool HasKf;
        internal int LastSeq, KfSeq;
        /// <summary>Stream time (ms) of the last applied frame.</summary>
        public ulong T;
        internal ulong KfT;

        internal Stream(HelloInfo h)
        {
            Hello = h;
            int n0 = h.Lods[0].Size;
            Morphs = new float[h.MorphNames.Length];
            for (int i = 0; i < Morphs.Length; i++) Morphs[i] = (float)h.Lo[i];
            Channels = new float[h.ChannelNames.Length];
            Codes = new int[n0];
            KfCodes = new int[n0];
            Idx = new int[n0];
            Scratch = new int[n0];
        }

        /// <summary>Dequantize the level's codes (docs/protocol.md 6.1): double, then float32.</summary>
        internal void Refresh()
        {
            HelloInfo h = Hello;
            LodTable lod = h.Lods[Lod];
            double q = h.Bits == 8 ? 255.0 : 65535.0;
            double r = h.Bits == 8 ? 127.0 : 32767.0;
            int nm = lod.Morphs.Length;
            for (int i = 0; i < Morphs.Length; i++) Morphs[i] = (float)h.Lo[i];
            Array.Clear(Channels, 0, Channels.Length);
            for (int j = 0; j < nm; j++)
            {
                int i = lod.Morphs[j];
                double lo = h.Lo[i];
                Morphs[i] = (float)(lo + ((h.Hi[i] - lo) * Codes[j]) / q);
            }
            for (int j = 0; j < lod.Channels.Length; j++)
            {
                Channels[lod.Channels[j]] = (float)((h.RotScale * Codes[nm + j]) / r);
            }
        }
    }

    /// <summary>What one message was. Which fields are set depends on Kind (as in the C++ Result).</summary>
    public struct Result
    {
        public Kind Kind;
        public ErrorCode Error;
        public string Detail;
        public uint Sid;
        public int Lod;
        public int Seq;
        public int Count;
        public int Type;
        public ulong T;
        public bool Keyframe;
        // Hello
        public HelloInfo Hello;
        // Event: State -> Text; Speaking -> Flag; Emotion -> Text, Number; VoiceCut -> Seq (next audio seq)
        public int Event;
        public string Text;
        public bool Flag;
        public double Number;
        // Control (AudioCode: SUBSCRIBE's optional seventh element or SET_AUDIO's, -1 when absent)
        public int Op;
        public int AudioCode;
        public int Mode;
        public int Bits;
        public string Session;
        // Ping / Pong / ErrorMessage
        public ulong Nonce;
        public int Code;
        // PublishHello / Capture
        public uint Pid;
        public int Fps;
        public string[] Names;
        public string[] ChannelNames;
        public string Source;
        public float[] Values;
        public List<KeyValuePair<string, double>> Named;
        // Audio: the payload (a copy), its codec and rate from the stream's hello
        public byte[] Payload;
        public AudioCodec Codec;
        public int Rate;
    }

    /// <summary>Decodes every v1.1 message; holds the streams announced by hellos.</summary>
    public sealed class Decoder
    {
        const ulong U16 = 0xFFFF;
        const ulong U32 = 0xFFFFFFFF;
        const ulong U64 = ulong.MaxValue;

        readonly Dictionary<uint, Stream> streams = new Dictionary<uint, Stream>();
        readonly Dictionary<uint, int> publishers = new Dictionary<uint, int>();
        readonly int maxStreams;

        public Decoder(int maxStreams = Limits.MaxStreams)
        {
            this.maxStreams = maxStreams;
        }

        /// <summary>The stream announced by the hello for sid, or null.</summary>
        public Stream GetStream(uint sid)
        {
            Stream s;
            return streams.TryGetValue(sid, out s) ? s : null;
        }

        /// <summary>Call when sending SET_LOD: late frames of the level being left become Stale.</summary>
        public void ExpectLod(uint sid, int lod)
        {
            Stream s = GetStream(sid);
            if (s != null) s.WantLod = lod;
        }

        /// <summary>Forget every stream (a new connection starts from new hellos).</summary>
        public void Reset()
        {
            streams.Clear();
            publishers.Clear();
        }

        public Result Feed(byte[] data)
        {
            return Feed(data, 0, data.Length);
        }

        /// <summary>Decode one message (one WebSocket binary message). Never throws for bad input.</summary>
        public Result Feed(byte[] data, int offset, int count)
        {
            try
            {
                if (count > Limits.MaxMessageBytes)
                {
                    throw new ProtocolException(ErrorCode.Limit, "message of " + count + " bytes exceeds " + Limits.MaxMessageBytes);
                }
                Result fast;
                if (FastFrame(data, offset, count, out fast)) return fast;
                return Dispatch(MsgPack.Unpack(data, offset, count));
            }
            catch (ProtocolException e)
            {
                return new Result { Kind = Kind.Error, Error = e.Code, Detail = e.Message };
            }
        }

        // ------------------------------------------------------------------ field checks

        static ulong UintOf(MpValue v, string what, ulong max)
        {
            if (v.Type != MpType.Int) throw new ProtocolException(ErrorCode.Type, what + " must be an integer");
            if (v.Negative || v.U > max) throw new ProtocolException(ErrorCode.Value, what + " is out of range");
            return v.U;
        }

        static void Need(MpValue msg, int n, string what)
        {
            if (msg.Count < n) throw new ProtocolException(ErrorCode.Type, what + " needs at least " + n + " elements, got " + msg.Count);
        }

        static string StrOf(MpValue v, string what, int limit)
        {
            if (v.Type != MpType.Str) throw new ProtocolException(ErrorCode.Type, what + " must be a str");
            if (v.Size > limit) throw new ProtocolException(ErrorCode.Limit, what + " is longer than " + limit + " bytes");
            return v.Text;
        }

        static double NumOf(MpValue v, string what)
        {
            if (!v.IsNumber) throw new ProtocolException(ErrorCode.Type, what + " must be a number");
            return v.Number;
        }

        static MpValue ListOf(MpValue v, string what, int limit)
        {
            if (v.Type != MpType.Array) throw new ProtocolException(ErrorCode.Type, what + " must be an array");
            if (v.Count > limit) throw new ProtocolException(ErrorCode.Limit, what + " has " + v.Count + " entries, the limit is " + limit);
            return v;
        }

        static string[] NamesOf(MpValue v, string what, int limit)
        {
            ListOf(v, what, limit);
            var out_ = new string[v.Count];
            for (int k = 0; k < out_.Length; k++) out_[k] = StrOf(v.Items[k], what + " entry", Limits.MaxNameBytes);
            return out_;
        }

        /// <summary>Index lists: any integer is accepted here, range is a schema (value) check.</summary>
        static long[] UintsOf(MpValue v, string what, int limit)
        {
            ListOf(v, what, limit);
            var out_ = new long[v.Count];
            for (int k = 0; k < out_.Length; k++)
            {
                MpValue x = v.Items[k];
                if (x.Type != MpType.Int) throw new ProtocolException(ErrorCode.Type, what + " entries must be integers");
                out_[k] = x.Negative ? -1 : (x.U > U32 ? (long)U32 + 1 : (long)x.U);
            }
            return out_;
        }

        static ProtocolException HelloValue(string detail)
        {
            return new ProtocolException(ErrorCode.Value, "hello: " + detail);
        }

        static bool SeqNewer(int a, int b)
        {
            int d = (a - b) & 0xFFFF;
            return d > 0 && d < 0x8000;
        }

        // ------------------------------------------------------------------ messages

        Result Dispatch(MpValue msg)
        {
            if (msg.Type != MpType.Array || msg.Count == 0)
            {
                throw new ProtocolException(ErrorCode.Type, "a message is a non-empty msgpack array");
            }
            int kind = (int)UintOf(msg.Items[0], "message type", 255);
            switch ((MsgType)kind)
            {
                case MsgType.Hello:
                {
                    HelloInfo h = ParseHello(msg);
                    if (!streams.ContainsKey(h.Sid) && streams.Count >= maxStreams)
                    {
                        throw new ProtocolException(ErrorCode.Limit, "more than " + maxStreams + " streams");
                    }
                    streams[h.Sid] = new Stream(h);
                    return new Result { Kind = Kind.Hello, Sid = h.Sid, Hello = h };
                }
                case MsgType.Keyframe:
                case MsgType.Delta:
                    return Frame(msg, kind == (int)MsgType.Keyframe);
                case MsgType.Event:
                    return ParseEvent(msg);
                case MsgType.Control:
                    return ParseControl(msg);
                case MsgType.Ping:
                case MsgType.Pong:
                    Need(msg, 3, "ping");
                    return new Result
                    {
                        Kind = kind == (int)MsgType.Ping ? Kind.Ping : Kind.Pong,
                        Nonce = UintOf(msg.Items[1], "nonce", U64),
                        T = UintOf(msg.Items[2], "t", U64),
                    };
                case MsgType.Error:
                    Need(msg, 3, "error");
                    return new Result
                    {
                        Kind = Kind.ErrorMessage,
                        Code = (int)UintOf(msg.Items[1], "error code", U16),
                        Text = StrOf(msg.Items[2], "message", Limits.MaxEventText),
                    };
                case MsgType.PublishHello:
                    return ParsePublishHello(msg);
                case MsgType.Capture:
                    return ParseCapture(msg);
                case MsgType.Audio:
                    return ParseAudio(msg);
                default:
                    return new Result { Kind = Kind.Ignored, Type = kind };
            }
        }

        static HelloInfo ParseHello(MpValue msg)
        {
            Need(msg, 4, "hello");
            if (msg.Items[1].Type != MpType.Int) throw new ProtocolException(ErrorCode.Type, "hello version must be an integer");
            ulong version = UintOf(msg.Items[1], "hello version", 255);
            if (version != Limits.Version) throw new ProtocolException(ErrorCode.Version, "protocol version " + version + "; this decoder speaks 1");
            var h = new HelloInfo { Sid = (uint)UintOf(msg.Items[2], "sid", U32) };
            MpValue info = msg.Items[3];
            if (info.Type != MpType.Map) throw new ProtocolException(ErrorCode.Type, "hello info must be a map");
            Func<string, MpValue> get = key =>
            {
                MpValue v = info.Get(key);
                if (v == null) throw new ProtocolException(ErrorCode.Type, "hello info lacks '" + key + "'");
                return v;
            };
            h.Rig = StrOf(get("rig"), "rig", Limits.MaxNameBytes);
            h.MorphNames = NamesOf(get("morphs"), "morphs", Limits.MaxMorphs);
            h.ChannelNames = NamesOf(get("channels"), "channels", Limits.MaxChannels);
            MpValue lo = ListOf(get("lo"), "lo", Limits.MaxMorphs);
            h.Lo = new double[lo.Count];
            for (int k = 0; k < lo.Count; k++) h.Lo[k] = NumOf(lo.Items[k], "lo");
            MpValue hi = ListOf(get("hi"), "hi", Limits.MaxMorphs);
            h.Hi = new double[hi.Count];
            for (int k = 0; k < hi.Count; k++) h.Hi[k] = NumOf(hi.Items[k], "hi");
            h.RotScale = NumOf(get("rot_scale"), "rot_scale");
            MpValue lods = ListOf(get("lods"), "lods", Limits.LodLevels);
            h.Lods = new LodTable[lods.Count];
            var lodM = new long[lods.Count][];
            var lodC = new long[lods.Count][];
            for (int k = 0; k < lods.Count; k++)
            {
                MpValue item = ListOf(lods.Items[k], "lods entry", 16);
                if (item.Count < 4) throw new ProtocolException(ErrorCode.Type, "a lods entry is [level, fps, morphs, channels]");
                h.Lods[k] = new LodTable
                {
                    Level = (int)UintOf(item.Items[0], "lod level", Limits.LodLevels - 1),
                    Fps = (int)UintOf(item.Items[1], "lod fps", 240),
                };
                lodM[k] = UintsOf(item.Items[2], "lod morphs", Limits.MaxMorphs);
                lodC[k] = UintsOf(item.Items[3], "lod channels", Limits.MaxChannels);
            }
            h.Bits = (int)UintOf(get("bits"), "bits", 255);
            h.Mode = (int)UintOf(get("mode"), "mode", 1);
            MpValue opt;
            h.KeyframeMs = (opt = info.Get("keyframe_ms")) != null ? UintOf(opt, "keyframe_ms", U64) : 500;
            h.DeadBand = (opt = info.Get("dead_band")) != null ? NumOf(opt, "dead_band") : 1.0;
            h.Hold = (opt = info.Get("hold")) != null ? (int)UintOf(opt, "hold", 255) : 6;
            h.KeyframeMs = Math.Max(1UL, h.KeyframeMs);
            h.Hold = Math.Max(1, h.Hold);
            ParseVoice(info, h);
            // Schema checks, the same as StreamSchema / StreamParams in Python -> value errors.
            int m = h.MorphNames.Length, c = h.ChannelNames.Length;
            if (m == 0 || m > Limits.MaxMorphs) throw HelloValue("a stream has 1..1024 morphs");
            if (h.Lo.Length != m || h.Hi.Length != m) throw HelloValue("lo and hi need one value per morph");
            for (int k = 0; k < m; k++)
            {
                if (!(Math.Abs(h.Lo[k]) <= Limits.F32Max && Math.Abs(h.Hi[k]) <= Limits.F32Max))
                {
                    throw HelloValue("morph ranges must be finite float32 values");
                }
            }
            for (int k = 0; k < m; k++)
            {
                if (!(h.Hi[k] > h.Lo[k])) throw HelloValue("every morph range needs hi > lo");
            }
            if (!(h.RotScale > 0 && h.RotScale <= Limits.F32Max)) throw HelloValue("rot_scale must be a positive float32 value");
            if (h.Lods.Length != Limits.LodLevels) throw HelloValue("a stream has exactly 4 LOD levels");
            for (int k = 0; k < Limits.LodLevels; k++)
            {
                LodTable t = h.Lods[k];
                if (t.Level != k) throw HelloValue("LOD tables must be listed in level order");
                if (t.Fps < 1) throw HelloValue("LOD fps must be 1..240");
                t.Morphs = Indices(lodM[k], m);
                t.Channels = Indices(lodC[k], c);
                if (t.Size == 0) throw HelloValue("a LOD level needs at least one element");
            }
            // Stream state is sized by level 0, so it must hold every element.
            if (h.Lods[0].Morphs.Length != m || h.Lods[0].Channels.Length != c)
            {
                throw HelloValue("LOD 0 must list every morph and every channel");
            }
            if (h.Bits != 8 && h.Bits != 16) throw HelloValue("bits must be 8 or 16");
            if (!(!double.IsNaN(h.DeadBand) && !double.IsInfinity(h.DeadBand) && h.DeadBand >= 0)) throw HelloValue("dead_band must be >= 0");
            return h;
        }

        static int[] Indices(long[] src, int n)
        {
            var dst = new int[src.Length];
            for (int j = 0; j < src.Length; j++)
            {
                if (src[j] < 0 || src[j] >= n || (j > 0 && src[j] <= src[j - 1]))
                {
                    throw HelloValue("LOD indices must be ascending, unique and in range");
                }
                dst[j] = (int)src[j];
            }
            return dst;
        }

        /// <summary>The v1.1 voice keys (docs/protocol.md 3.1, 3.8): minor, audio, audio_rate.</summary>
        static void ParseVoice(MpValue info, HelloInfo h)
        {
            MpValue v;
            if ((v = info.Get("minor")) != null) h.Minor = UintOf(v, "minor", U64);
            if ((v = info.Get("audio")) == null) return;
            string name = StrOf(v, "audio", Limits.MaxNameBytes);
            if (name == "opus") h.Audio = AudioCodec.Opus;
            else if (name == "pcm16") h.Audio = AudioCodec.Pcm16;
            else throw new ProtocolException(ErrorCode.Value, "audio '" + name + "' is not opus or pcm16");
            ulong rate = (ulong)(h.Audio == AudioCodec.Opus ? Limits.OpusRate : Limits.Pcm16Rate);
            if ((v = info.Get("audio_rate")) != null) rate = UintOf(v, "audio_rate", U64);
            bool allowed = h.Audio == AudioCodec.Opus ? rate == Limits.OpusRate : rate >= Limits.MinPcm16Rate && rate <= Limits.MaxPcm16Rate;
            if (!allowed) throw new ProtocolException(ErrorCode.Value, "audio_rate " + rate + " is not allowed for " + name);
            h.AudioRate = (int)rate;
        }

        /// <summary>SUBSCRIBE's and SET_AUDIO's voice: 0 off, 1 opus, 2 pcm16 (others: value).</summary>
        static int AudioCode(MpValue v)
        {
            return (int)UintOf(v, "audio", 2);
        }

        Result ParseEvent(MpValue msg)
        {
            Need(msg, 5, "event");
            var r = new Result
            {
                Kind = Kind.Event,
                Sid = (uint)UintOf(msg.Items[1], "sid", U32),
                T = UintOf(msg.Items[2], "t", U64),
                Event = (int)UintOf(msg.Items[3], "event kind", 255),
            };
            MpValue v = msg.Items[4];
            switch ((EventKind)r.Event)
            {
                case EventKind.State:
                {
                    ulong code = UintOf(v, "state", 255);
                    if (code >= (ulong)Limits.SessionStates.Length) throw new ProtocolException(ErrorCode.Value, "state " + code + " is not defined");
                    r.Text = Limits.SessionStates[code];
                    return r;
                }
                case EventKind.Speaking:
                    if (v.Type != MpType.Bool) throw new ProtocolException(ErrorCode.Type, "speaking must be a bool");
                    r.Flag = v.Boolean;
                    return r;
                case EventKind.Emotion:
                    ListOf(v, "emotion", 2);
                    if (v.Count != 2) throw new ProtocolException(ErrorCode.Type, "emotion is [name, intensity]");
                    r.Text = StrOf(v.Items[0], "emotion name", Limits.MaxNameBytes);
                    r.Number = NumOf(v.Items[1], "intensity");
                    return r;
                case EventKind.VoiceCut:
                    r.Seq = (int)UintOf(v, "voice cut next_seq", U16);
                    return r;
                default:
                    return new Result { Kind = Kind.Ignored, Type = (int)MsgType.Event };
            }
        }

        static Result ParseControl(MpValue msg)
        {
            Need(msg, 3, "control");
            var r = new Result { Kind = Kind.Control, Op = (int)UintOf(msg.Items[1], "control op", 255), Bits = 8, Session = "", AudioCode = -1 };
            if (r.Op == (int)Protocol.Op.Subscribe)
            {
                Need(msg, 6, "subscribe");
                r.Session = StrOf(msg.Items[2], "session", Limits.MaxNameBytes);
                r.Lod = (int)UintOf(msg.Items[3], "lod", 3);
                r.Mode = (int)UintOf(msg.Items[4], "mode", 1);
                r.Bits = (int)UintOf(msg.Items[5], "bits", 255);
                if (r.Bits != 8 && r.Bits != 16) throw new ProtocolException(ErrorCode.Value, "bits " + r.Bits + " is not 8 or 16");
                if (msg.Count > 6) r.AudioCode = AudioCode(msg.Items[6]);
                return r;
            }
            if (r.Op > (int)Protocol.Op.SetAudio) return new Result { Kind = Kind.Ignored, Type = (int)MsgType.Control };
            r.Sid = (uint)UintOf(msg.Items[2], "sid", U32);
            if (r.Op == (int)Protocol.Op.Unsubscribe) return r;
            Need(msg, 4, "control");
            if (r.Op == (int)Protocol.Op.SetAudio)
            {
                r.AudioCode = AudioCode(msg.Items[3]);
                return r;
            }
            r.Lod = (int)UintOf(msg.Items[3], "lod", 3);
            if (r.Op == (int)Protocol.Op.Ack)
            {
                Need(msg, 5, "ack");
                r.Seq = (int)UintOf(msg.Items[4], "seq", U16);
            }
            return r;
        }

        Result ParsePublishHello(MpValue msg)
        {
            Need(msg, 4, "publish hello");
            ulong version = UintOf(msg.Items[1], "version", 255);
            if (version != Limits.Version) throw new ProtocolException(ErrorCode.Version, "protocol version " + version + "; this decoder speaks 1");
            uint pid = (uint)UintOf(msg.Items[2], "pid", U32);
            MpValue info = msg.Items[3];
            if (info.Type != MpType.Map) throw new ProtocolException(ErrorCode.Type, "publish hello info must be a map");
            MpValue v;
            var r = new Result
            {
                Kind = Kind.PublishHello,
                Pid = pid,
                Names = (v = info.Get("morphs")) != null ? NamesOf(v, "morphs", Limits.MaxMorphs) : new string[0],
                ChannelNames = (v = info.Get("channels")) != null ? NamesOf(v, "channels", Limits.MaxChannels) : new string[0],
                Fps = (v = info.Get("fps")) != null ? (int)UintOf(v, "fps", 240) : 60,
                Source = (v = info.Get("source")) != null ? StrOf(v, "source", Limits.MaxNameBytes) : "arkit52",
            };
            if (!publishers.ContainsKey(pid) && publishers.Count >= maxStreams)
            {
                throw new ProtocolException(ErrorCode.Limit, "more than " + maxStreams + " publishers");
            }
            publishers[pid] = r.Names.Length + r.ChannelNames.Length;
            return r;
        }

        Result ParseCapture(MpValue msg)
        {
            Need(msg, 5, "capture");
            var r = new Result
            {
                Kind = Kind.Capture,
                Pid = (uint)UintOf(msg.Items[1], "pid", U32),
                Seq = (int)UintOf(msg.Items[2], "seq", U16),
                T = UintOf(msg.Items[3], "t", U64),
                Named = new List<KeyValuePair<string, double>>(),
            };
            MpValue payload = msg.Items[4];
            if (payload.Type == MpType.Map)
            {
                if (payload.MapSize > Limits.MaxMorphs + Limits.MaxChannels) throw new ProtocolException(ErrorCode.Limit, "too many named values");
                var index = new Dictionary<string, int>();
                for (int k = 0; k + 1 < payload.Count; k += 2)
                {
                    string name = StrOf(payload.Items[k], "name", Limits.MaxNameBytes);
                    double value = NumOf(payload.Items[k + 1], "value");
                    int at;
                    if (index.TryGetValue(name, out at)) r.Named[at] = new KeyValuePair<string, double>(name, value);
                    else
                    {
                        index[name] = r.Named.Count;
                        r.Named.Add(new KeyValuePair<string, double>(name, value));
                    }
                }
                return r;
            }
            if (payload.Type == MpType.Bin)
            {
                int n;
                if (!publishers.TryGetValue(r.Pid, out n)) throw new ProtocolException(ErrorCode.Value, "positional capture for pid " + r.Pid + " without a publish hello");
                if (payload.Size != 4 * n) throw new ProtocolException(ErrorCode.Body, "capture carries " + payload.Size + " bytes, expected " + (4 * n));
                r.Values = new float[n];
                for (int i = 0; i < n; i++) r.Values[i] = BitConverter.ToSingle(LittleEndian(payload.Source, payload.Offset + 4 * i), 0);
                return r;
            }
            throw new ProtocolException(ErrorCode.Type, "capture values must be bin (positional) or map (by name)");
        }

        static byte[] LittleEndian(byte[] src, int at)
        {
            var b = new byte[4];
            Buffer.BlockCopy(src, at, b, 0, 4);
            if (!BitConverter.IsLittleEndian) Array.Reverse(b);
            return b;
        }

        /// <summary>AUDIO [10, sid, seq, t, payload] (docs/protocol.md 3.8).</summary>
        Result ParseAudio(MpValue msg)
        {
            Need(msg, 5, "audio");
            uint sid = (uint)UintOf(msg.Items[1], "sid", U32);
            int seq = (int)UintOf(msg.Items[2], "seq", U16);
            ulong t = UintOf(msg.Items[3], "t", U64);
            MpValue payload = msg.Items[4];
            if (payload.Type != MpType.Bin) throw new ProtocolException(ErrorCode.Type, "an audio payload must be bin");
            Stream st = GetStream(sid);
            if (st == null) return new Result { Kind = Kind.UnknownStream, Sid = sid };
            HelloInfo h = st.Hello;
            if (h.Audio == AudioCodec.None) throw new ProtocolException(ErrorCode.Value, "audio for a stream whose hello named no voice");
            if (payload.Size == 0) throw new ProtocolException(ErrorCode.Body, "an empty audio payload");
            if (h.Audio == AudioCodec.Pcm16)
            {
                long maxBytes = 2L * (h.AudioRate * Limits.AudioPacketMs / 1000);
                if (payload.Size % 2 != 0) throw new ProtocolException(ErrorCode.Body, "a pcm16 payload of odd length");
                if (payload.Size > maxBytes) throw new ProtocolException(ErrorCode.Body, "a pcm16 payload longer than 20 ms");
            }
            return new Result
            {
                Kind = Kind.Audio, Sid = sid, Seq = seq, T = t, Payload = payload.CopyBytes(), Codec = h.Audio, Rate = h.AudioRate,
            };
        }

        // ------------------------------------------------------------------ frames

        /// <summary>An ordinary keyframe/delta read without building a msgpack tree; false if unusual
        /// (the general path then parses it and finds any error).</summary>
        bool FastFrame(byte[] b, int offset, int size, out Result result)
        {
            result = default(Result);
            if (size < 2) return false;
            int head = b[offset];
            if (head != 0x96 && head != 0x97) return false;
            int pos = offset + 1, end = offset + size;
            int fields = head == 0x96 ? 5 : 6;
            ulong f0 = 0, f1 = 0, f2 = 0, f3 = 0, f4 = 0, f5 = 0;
            for (int f = 0; f < fields; f++)
            {
                if (pos >= end) return false;
                int c = b[pos];
                ulong v;
                if (c <= 0x7f) { v = (ulong)c; pos += 1; }
                else if (c == 0xcc && pos + 2 <= end) { v = b[pos + 1]; pos += 2; }
                else if (c == 0xcd && pos + 3 <= end) { v = (ulong)((b[pos + 1] << 8) | b[pos + 2]); pos += 3; }
                else if (c == 0xce && pos + 5 <= end) { v = ((ulong)b[pos + 1] << 24) | ((ulong)b[pos + 2] << 16) | ((ulong)b[pos + 3] << 8) | b[pos + 4]; pos += 5; }
                else return false;
                switch (f)
                {
                    case 0: f0 = v; break;
                    case 1: f1 = v; break;
                    case 2: f2 = v; break;
                    case 3: f3 = v; break;
                    case 4: f4 = v; break;
                    default: f5 = v; break;
                }
            }
            bool keyframe = f0 == 1 && head == 0x96;
            if (!keyframe && !(f0 == 2 && head == 0x97)) return false;
            if (f2 > 3 || f3 > U16) return false;
            if (!keyframe && (f4 < 1 || f4 >= 0x8000)) return false;
            if (pos >= end) return false;
            int len, c2 = b[pos];
            if (c2 == 0xc4 && pos + 2 <= end) { len = b[pos + 1]; pos += 2; }
            else if (c2 == 0xc5 && pos + 3 <= end) { len = (b[pos + 1] << 8) | b[pos + 2]; pos += 3; }
            else return false;
            if (pos + len != end) return false;
            result = Apply((uint)f1, (int)f2, (int)f3, keyframe ? f4 : f5, keyframe ? 0 : (int)f4, keyframe, b, pos, len);
            return true;
        }

        Result Frame(MpValue msg, bool keyframe)
        {
            int nFields = keyframe ? 6 : 7;
            if (msg.Count < nFields) throw new ProtocolException(ErrorCode.Type, "a frame needs " + nFields + " elements, got " + msg.Count);
            uint sid = (uint)UintOf(msg.Items[1], "sid", U32);
            ulong lod = UintOf(msg.Items[2], "lod", 255);
            int seq = (int)UintOf(msg.Items[3], "seq", U16);
            ulong t, back = 0;
            if (keyframe) t = UintOf(msg.Items[4], "t", U64);
            else
            {
                back = UintOf(msg.Items[4], "back", U16);
                t = UintOf(msg.Items[5], "dt", U64);
            }
            MpValue body = msg.Items[nFields - 1];
            if (body.Type != MpType.Bin) throw new ProtocolException(ErrorCode.Type, "a frame body must be bin");
            if (lod >= Limits.LodLevels) throw new ProtocolException(ErrorCode.Value, "lod " + lod + " is not 0..3");
            if (!keyframe && !(back >= 1 && back < 0x8000)) throw new ProtocolException(ErrorCode.Value, "back " + back + " is not 1..32767");
            return Apply(sid, (int)lod, seq, t, (int)back, keyframe, body.Source, body.Offset, body.Size);
        }

        /// <summary>Body layout: group mask, element masks, values (docs/protocol.md 5).</summary>
        static int UnpackBody(byte[] b, int at, int size, int n, int nm, int bits, int[] idx, int[] codes)
        {
            int groups = (n + 7) >> 3;
            int gm = (groups + 7) >> 3;
            if (size < gm) throw new ProtocolException(ErrorCode.Body, "body of " + size + " bytes is shorter than its group mask");
            int pos = gm, count = 0;
            for (int g = 0; g < gm * 8; g++)
            {
                if (((b[at + (g >> 3)] >> (g & 7)) & 1) == 0) continue;
                if (g >= groups) throw new ProtocolException(ErrorCode.Body, "group " + g + " is set but the level has " + groups + " groups");
                if (pos >= size) throw new ProtocolException(ErrorCode.Body, "body ends inside the element masks");
                int mask = b[at + pos++];
                if (mask == 0) throw new ProtocolException(ErrorCode.Body, "group " + g + " is flagged but its element mask is empty");
                for (int j = 0; j < 8; j++)
                {
                    if (((mask >> j) & 1) == 0) continue;
                    int i = g * 8 + j;
                    if (i >= n) throw new ProtocolException(ErrorCode.Body, "element " + i + " is set but the level has " + n);
                    idx[count++] = i;
                }
            }
            int width = bits >> 3;
            if (size - pos != width * count)
            {
                throw new ProtocolException(ErrorCode.Body, count + " elements need " + (width * count) + " value bytes, the body has " + (size - pos));
            }
            for (int k = 0; k < count; k++)
            {
                int c;
                if (width == 1)
                {
                    c = b[at + pos + k];
                    if (idx[k] >= nm && c > 127) c -= 256;
                }
                else
                {
                    c = b[at + pos + 2 * k] | (b[at + pos + 2 * k + 1] << 8);
                    if (idx[k] >= nm && c > 32767) c -= 65536;
                }
                codes[k] = c;
            }
            return count;
        }

        Result Apply(uint sid, int lod, int seq, ulong t, int back, bool keyframe, byte[] body, int at, int size)
        {
            var r = new Result { Sid = sid, Lod = lod, Seq = seq };
            Stream st;
            if (!streams.TryGetValue(sid, out st))
            {
                r.Kind = Kind.UnknownStream;
                return r;
            }
            LodTable table = st.Hello.Lods[lod];
            int count = UnpackBody(body, at, size, table.Size, table.Morphs.Length, st.Hello.Bits, st.Idx, st.Scratch);
            // The body is valid for its level: from here on only stream state decides.
            r.Count = count;
            if (keyframe)
            {
                if ((st.WantLod >= 0 && lod != st.WantLod) || (st.HasKf && lod == st.Lod && SeqNewer(st.LastSeq, seq)))
                {
                    r.Kind = Kind.Stale;
                    return r;
                }
                Array.Clear(st.Codes, 0, st.Codes.Length);
                for (int k = 0; k < count; k++) st.Codes[st.Idx[k]] = st.Scratch[k];
                Array.Copy(st.Codes, st.KfCodes, st.Codes.Length);
                st.Lod = lod;
                st.HasKf = true;
                st.LastSeq = st.KfSeq = seq;
                st.T = st.KfT = t;
                st.Refresh();
                r.Kind = Kind.Frame;
                r.Keyframe = true;
                r.T = t;
                return r;
            }
            if (st.WantLod >= 0 && lod != st.WantLod)
            {
                r.Kind = Kind.Stale;  // a late frame of a level this client left
                return r;
            }
            if (!st.HasKf || lod != st.Lod)
            {
                r.Kind = Kind.NeedKeyframe;
                return r;
            }
            if (!SeqNewer(seq, st.LastSeq))
            {
                r.Kind = Kind.Stale;
                return r;
            }
            int reference = (seq - back) & 0xFFFF;
            ulong refT;
            if (reference == st.KfSeq)
            {
                Array.Copy(st.KfCodes, st.Codes, st.Codes.Length);
                refT = st.KfT;
            }
            else if (reference == st.LastSeq)
            {
                refT = st.T;
            }
            else
            {
                r.Kind = Kind.NeedKeyframe;  // a gap: the decoder does not hold the reference
                return r;
            }
            for (int k = 0; k < count; k++) st.Codes[st.Idx[k]] = st.Scratch[k];
            st.LastSeq = seq;
            st.T = refT + t;
            st.Refresh();
            r.Kind = Kind.Frame;
            r.T = st.T;
            return r;
        }
    }
}
