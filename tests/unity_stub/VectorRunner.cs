// Decode a conformance vector file (tests/vectors/*.msgs) with the Unity client's C# decoder
// and print one JSON line per message, in the shape of the vectors' "expect" entries (the same
// as native/examples/decode_vectors.cpp). tests/test_unity_client.py compiles this with mcs
// and compares the output.
//
// Record format: u8 tag (0 message, 1 expect_lod, 2 reset) | u32 LE length | payload; an
// expect_lod payload is u32 LE sid | u8 lod; reset starts a fresh Decoder.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;
using AvatarEngine.Protocol;
using Decoder = AvatarEngine.Protocol.Decoder;

static class VectorRunner
{
    static string Quote(string s)
    {
        var o = new StringBuilder("\"");
        foreach (char ch in s)
        {
            if (ch == '"' || ch == '\\') o.Append('\\').Append(ch);
            else if (ch < 0x20) o.Append("\\u").Append(((int)ch).ToString("x4"));
            else o.Append(ch);
        }
        return o.Append('"').ToString();
    }

    static string Num(double v)
    {
        if (double.IsNaN(v)) return "\"NaN\"";
        if (double.IsInfinity(v)) return v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
        return v.ToString("R", CultureInfo.InvariantCulture);
    }

    static string Floats(float[] v)
    {
        var parts = new string[v.Length];
        for (int i = 0; i < v.Length; i++) parts[i] = Num(v[i]);
        return "[" + string.Join(",", parts) + "]";
    }

    static string Strings(string[] v)
    {
        var parts = new string[v.Length];
        for (int i = 0; i < v.Length; i++) parts[i] = Quote(v[i]);
        return "[" + string.Join(",", parts) + "]";
    }

    static string Hex(byte[] b)
    {
        var o = new StringBuilder();
        foreach (byte x in b) o.Append(x.ToString("x2"));
        return o.ToString();
    }

    static string Describe(Result r, Decoder dec)
    {
        switch (r.Kind)
        {
            case Kind.Hello:
            {
                // v1.1 keys only when the hello carries them (as avatar_engine.codec.conformance does)
                string voice = (r.Hello.Minor != 0 ? ",\"minor\":" + r.Hello.Minor : "") +
                               (r.Hello.Audio != AudioCodec.None ? ",\"audio\":" + Quote(r.Hello.AudioName) + ",\"audio_rate\":" + r.Hello.AudioRate : "");
                return "{\"kind\":\"hello\",\"sid\":" + r.Sid + ",\"rig\":" + Quote(r.Hello.Rig) + ",\"morphs\":" + r.Hello.MorphNames.Length +
                       ",\"channels\":" + r.Hello.ChannelNames.Length + ",\"bits\":" + r.Hello.Bits + ",\"mode\":" + r.Hello.Mode + voice + "}";
            }
            case Kind.Frame:
            {
                AvatarEngine.Protocol.Stream s = dec.GetStream(r.Sid);
                return "{\"kind\":\"frame\",\"sid\":" + r.Sid + ",\"lod\":" + r.Lod + ",\"seq\":" + r.Seq + ",\"t\":" + r.T +
                       ",\"keyframe\":" + (r.Keyframe ? "true" : "false") + ",\"count\":" + r.Count +
                       ",\"morphs\":" + Floats(s.Morphs) + ",\"channels\":" + Floats(s.Channels) + "}";
            }
            case Kind.NeedKeyframe:
                return "{\"kind\":\"need_keyframe\",\"sid\":" + r.Sid + ",\"lod\":" + r.Lod + "}";
            case Kind.Stale:
                return "{\"kind\":\"stale\",\"sid\":" + r.Sid + ",\"lod\":" + r.Lod + ",\"seq\":" + r.Seq + "}";
            case Kind.UnknownStream:
                return "{\"kind\":\"unknown_stream\",\"sid\":" + r.Sid + "}";
            case Kind.Event:
            {
                string value;
                if (r.Event == (int)EventKind.State) value = Quote(r.Text);
                else if (r.Event == (int)EventKind.Speaking) value = r.Flag ? "true" : "false";
                else if (r.Event == (int)EventKind.Emotion) value = "[" + Quote(r.Text) + "," + Num(r.Number) + "]";
                else value = r.Seq.ToString(CultureInfo.InvariantCulture);
                return "{\"kind\":\"event\",\"sid\":" + r.Sid + ",\"t\":" + r.T + ",\"event\":" + r.Event + ",\"value\":" + value + "}";
            }
            case Kind.Control:
                return "{\"kind\":\"control\",\"op\":" + r.Op + ",\"sid\":" + r.Sid + ",\"lod\":" + r.Lod + ",\"seq\":" + r.Seq +
                       ",\"session\":" + Quote(r.Session) + ",\"mode\":" + r.Mode + ",\"bits\":" + r.Bits +
                       (r.AudioCode >= 0 ? ",\"audio\":" + r.AudioCode : "") + "}";
            case Kind.Ping:
            case Kind.Pong:
                return "{\"kind\":\"" + (r.Kind == Kind.Ping ? "ping" : "pong") + "\",\"nonce\":" + r.Nonce + ",\"t\":" + r.T + "}";
            case Kind.ErrorMessage:
                return "{\"kind\":\"error_message\",\"code\":" + r.Code + ",\"message\":" + Quote(r.Text) + "}";
            case Kind.PublishHello:
                return "{\"kind\":\"publish_hello\",\"pid\":" + r.Pid + ",\"morphs\":" + Strings(r.Names) + ",\"channels\":" + Strings(r.ChannelNames) +
                       ",\"fps\":" + r.Fps + ",\"source\":" + Quote(r.Source) + "}";
            case Kind.Capture:
            {
                var named = new List<KeyValuePair<string, double>>(r.Named);
                named.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
                var parts = new List<string>();
                foreach (var kv in named) parts.Add(Quote(kv.Key) + ":" + Num(kv.Value));
                return "{\"kind\":\"capture\",\"pid\":" + r.Pid + ",\"seq\":" + r.Seq + ",\"t\":" + r.T +
                       ",\"values\":" + (r.Values != null ? Floats(r.Values) : "null") + ",\"named\":{" + string.Join(",", parts.ToArray()) + "}}";
            }
            case Kind.Audio:
                return "{\"kind\":\"audio\",\"sid\":" + r.Sid + ",\"seq\":" + r.Seq + ",\"t\":" + r.T + ",\"codec\":" + Quote(r.Codec == AudioCodec.Opus ? "opus" : "pcm16") +
                       ",\"rate\":" + r.Rate + ",\"payload\":" + Quote(Hex(r.Payload)) + "}";
            case Kind.Error:
                return "{\"kind\":\"error\",\"code\":\"" + Limits.ErrorName(r.Error) + "\"}";
            default:
                return "{\"kind\":\"ignored\",\"type\":" + r.Type + "}";
        }
    }

    static uint Le32(byte[] b, int at)
    {
        return (uint)(b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24));
    }

    static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: VectorRunner.exe VECTOR.msgs");
            return 2;
        }
        byte[] file = File.ReadAllBytes(args[0]);
        var dec = new Decoder();
        var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { NewLine = "\n" };
        int pos = 0;
        while (pos < file.Length)
        {
            if (file.Length - pos < 5)
            {
                Console.Error.WriteLine("truncated record at " + pos);
                return 1;
            }
            byte tag = file[pos];
            int len = (int)Le32(file, pos + 1);
            pos += 5;
            if (file.Length - pos < len)
            {
                Console.Error.WriteLine("truncated payload at " + pos);
                return 1;
            }
            if (tag == 1 && len == 5) dec.ExpectLod(Le32(file, pos), file[pos + 4]);
            else if (tag == 2) dec = new Decoder();
            else
            {
                var msg = new byte[len];  // exactly sized, like the C++ runner
                Buffer.BlockCopy(file, pos, msg, 0, len);
                stdout.WriteLine(Describe(dec.Feed(msg), dec));
            }
            pos += len;
        }
        stdout.Flush();
        return 0;
    }
}
