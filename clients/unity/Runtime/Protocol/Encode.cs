// The few messages a viewer sends (docs/protocol.md 3.4, 3.5), byte for byte what the Python
// encoder writes (smallest msgpack integer forms).
using System.Collections.Generic;
using System.Text;

namespace AvatarEngine.Protocol
{
    public static class Encode
    {
        static void PackUint(List<byte> o, ulong v)
        {
            if (v < 0x80) o.Add((byte)v);
            else if (v < 0x100) { o.Add(0xcc); o.Add((byte)v); }
            else if (v < 0x10000) { o.Add(0xcd); o.Add((byte)(v >> 8)); o.Add((byte)v); }
            else if (v <= 0xFFFFFFFF)
            {
                o.Add(0xce);
                for (int s = 24; s >= 0; s -= 8) o.Add((byte)(v >> s));
            }
            else
            {
                o.Add(0xcf);
                for (int s = 56; s >= 0; s -= 8) o.Add((byte)(v >> s));
            }
        }

        static void PackStr(List<byte> o, string s)
        {
            byte[] b = Encoding.UTF8.GetBytes(s);
            if (b.Length < 32) o.Add((byte)(0xa0 | b.Length));
            else if (b.Length < 256) { o.Add(0xd9); o.Add((byte)b.Length); }
            else { o.Add(0xda); o.Add((byte)(b.Length >> 8)); o.Add((byte)b.Length); }
            o.AddRange(b);
        }

        /// <summary>SUBSCRIBE [4, 0, session, lod, mode, bits] or, asking for a voice (v1.1),
        /// [4, 0, session, lod, mode, bits, audio].</summary>
        public static byte[] Subscribe(string session, int lod = 0, Mode mode = Mode.Chained, int bits = 8, AudioRequest? audio = null)
        {
            var o = new List<byte> { (byte)(audio.HasValue ? 0x97 : 0x96), (byte)MsgType.Control, (byte)Op.Subscribe };
            PackStr(o, session);
            PackUint(o, (ulong)lod);
            PackUint(o, (ulong)mode);
            PackUint(o, (ulong)bits);
            if (audio.HasValue) PackUint(o, (ulong)audio.Value);
            return o.ToArray();
        }

        /// <summary>UNSUBSCRIBE [4,1,sid] | SET_LOD [4,2,sid,lod] | REQUEST_KEYFRAME [4,3,sid,lod] |
        /// ACK [4,4,sid,lod,seq] | SET_AUDIO [4,5,sid,audio] (pass the audio code as lod).</summary>
        public static byte[] Control(Op op, uint sid, int lod = 0, int seq = 0)
        {
            int n = op == Op.Unsubscribe ? 3 : (op == Op.Ack ? 5 : 4);
            var o = new List<byte> { (byte)(0x90 | n), (byte)MsgType.Control, (byte)op };
            PackUint(o, sid);
            if (n >= 4) PackUint(o, (ulong)lod);
            if (n == 5) PackUint(o, (ulong)seq);
            return o.ToArray();
        }

        /// <summary>SET_AUDIO [4, 5, sid, audio]: the server answers with a new hello naming the voice.</summary>
        public static byte[] SetAudio(uint sid, AudioRequest audio)
        {
            return Control(Op.SetAudio, sid, (int)audio);
        }

        public static byte[] Ping(ulong nonce, ulong t, bool pong = false)
        {
            var o = new List<byte> { 0x93, (byte)(pong ? MsgType.Pong : MsgType.Ping) };
            PackUint(o, nonce);
            PackUint(o, t);
            return o.ToArray();
        }
    }
}
