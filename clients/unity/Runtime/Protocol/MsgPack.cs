// A small, strict msgpack reader for the avatar-engine protocol decoder (C# 7.3, no
// dependencies). It mirrors native/include/avatar_engine/msgpack_reader.hpp: one message is
// parsed into a tree of MpValue; bad input is reported, never trusted:
//   - a length or count claiming more bytes than remain, a truncated value, the byte 0xc1,
//     invalid UTF-8 in a str, a map key that is an array or a map, trailing bytes -> malformed;
//   - nesting deeper than MaxDepth -> limit.
// A count is checked against the remaining bytes before anything is allocated, so memory and
// time stay bounded by the message size (docs/protocol.md 2.2).
using System;
using System.Collections.Generic;
using System.Text;

namespace AvatarEngine.Protocol
{
    /// <summary>The msgpack types the protocol distinguishes (an int is never a float).</summary>
    public enum MpType { Nil, Bool, Int, Float, Str, Bin, Array, Map, Ext }

    /// <summary>One parsed msgpack value. Str/Bin/Ext keep a view (offset, size) into the message.</summary>
    public sealed class MpValue
    {
        public MpType Type;
        public bool Boolean;
        /// <summary>Int: true when the value is below 0 (then <see cref="I"/> holds it).</summary>
        public bool Negative;
        /// <summary>Int: the value when non-negative.</summary>
        public ulong U;
        public long I;
        public double F;
        public byte[] Source;
        public int Offset;
        public int Size;
        public string Text;
        /// <summary>Array items; Map: key, value, key, value...</summary>
        public List<MpValue> Items;

        public bool IsNumber { get { return Type == MpType.Int || Type == MpType.Float; } }

        public double Number
        {
            get
            {
                if (Type == MpType.Float) return F;
                return Negative ? (double)I : (double)U;
            }
        }

        public int Count { get { return Items == null ? 0 : Items.Count; } }

        public int MapSize { get { return Count / 2; } }

        /// <summary>Map lookup by string key; the last duplicate wins (as in every decoder).</summary>
        public MpValue Get(string key)
        {
            MpValue found = null;
            for (int k = 0; k + 1 < Count; k += 2)
            {
                if (Items[k].Type == MpType.Str && Items[k].Text == key) found = Items[k + 1];
            }
            return found;
        }

        public byte[] CopyBytes()
        {
            var b = new byte[Size];
            Buffer.BlockCopy(Source, Offset, b, 0, Size);
            return b;
        }
    }

    /// <summary>Reads exactly one msgpack object from a byte range.</summary>
    public static class MsgPack
    {
        public const int MaxDepth = 8;

        static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>The single object that fills data[offset, offset + count) exactly.</summary>
        public static MpValue Unpack(byte[] data, int offset, int count)
        {
            var r = new Reader(data, offset, count);
            MpValue v = r.Value(0);
            if (r.Pos != r.End)
            {
                throw new ProtocolException(ErrorCode.Malformed, (r.End - r.Pos) + " trailing bytes");
            }
            return v;
        }

        sealed class Reader
        {
            readonly byte[] b;
            public int Pos;
            public readonly int End;

            public Reader(byte[] data, int offset, int count)
            {
                b = data;
                Pos = offset;
                End = offset + count;
            }

            void Need(long n)
            {
                if (n > End - Pos)
                {
                    throw new ProtocolException(ErrorCode.Malformed, "truncated: " + n + " bytes needed at offset " + Pos);
                }
            }

            void CheckCount(ulong n, int minItemBytes)
            {
                if (n > (ulong)((End - Pos) / minItemBytes))
                {
                    throw new ProtocolException(ErrorCode.Malformed, "a count of " + n + " at offset " + Pos + " exceeds the remaining bytes");
                }
            }

            ulong BeUint(int width)
            {
                Need(width);
                ulong v = 0;
                for (int k = 0; k < width; k++) v = (v << 8) | b[Pos + k];
                Pos += width;
                return v;
            }

            MpValue Int(long v)
            {
                return new MpValue { Type = MpType.Int, I = v, Negative = v < 0, U = v < 0 ? 0UL : (ulong)v };
            }

            MpValue Bytes(MpType t, ulong len)
            {
                CheckCount(len, 1);
                var v = new MpValue { Type = t, Source = b, Offset = Pos, Size = (int)len };
                Pos += (int)len;
                if (t == MpType.Str)
                {
                    try
                    {
                        v.Text = StrictUtf8.GetString(b, v.Offset, v.Size);
                    }
                    catch (ArgumentException)
                    {
                        throw new ProtocolException(ErrorCode.Malformed, "a str is not valid UTF-8");
                    }
                }
                return v;
            }

            MpValue Ext(ulong len)
            {
                Need(1);
                Pos += 1;  // the ext type code: v1 defines no ext, so a field holding one is a type error
                return Bytes(MpType.Ext, len);
            }

            MpValue Seq(MpType t, ulong n, int depth)
            {
                int per = t == MpType.Map ? 2 : 1;
                CheckCount(n, per);
                int total = (int)n * per;
                // Grown as items are parsed: a count only claims bytes.
                var v = new MpValue { Type = t, Items = new List<MpValue>(Math.Min(total, 16)) };
                for (int k = 0; k < total; k++)
                {
                    MpValue item = Value(depth + 1);
                    if (t == MpType.Map && k % 2 == 0 && (item.Type == MpType.Array || item.Type == MpType.Map))
                    {
                        throw new ProtocolException(ErrorCode.Malformed, "a map key must not be an array or a map");
                    }
                    v.Items.Add(item);
                }
                return v;
            }

            public MpValue Value(int depth)
            {
                if (depth > MaxDepth) throw new ProtocolException(ErrorCode.Limit, "nesting deeper than " + MaxDepth);
                Need(1);
                int c = b[Pos++];
                if (c <= 0x7f) return Int(c);
                if (c >= 0xe0) return Int(c - 0x100);
                if (c <= 0x8f) return Seq(MpType.Map, (ulong)(c & 0x0f), depth);
                if (c <= 0x9f) return Seq(MpType.Array, (ulong)(c & 0x0f), depth);
                if (c <= 0xbf) return Bytes(MpType.Str, (ulong)(c & 0x1f));
                switch (c)
                {
                    case 0xc0: return new MpValue { Type = MpType.Nil };
                    case 0xc2: return new MpValue { Type = MpType.Bool, Boolean = false };
                    case 0xc3: return new MpValue { Type = MpType.Bool, Boolean = true };
                    case 0xc4: case 0xc5: case 0xc6: return Bytes(MpType.Bin, BeUint(1 << (c - 0xc4)));
                    case 0xc7: case 0xc8: case 0xc9: return Ext(BeUint(1 << (c - 0xc7)));
                    case 0xca:
                    {
                        uint bits = (uint)BeUint(4);
                        return new MpValue { Type = MpType.Float, F = BitConverter.ToSingle(BitConverter.GetBytes(bits), 0) };
                    }
                    case 0xcb:
                    {
                        ulong bits = BeUint(8);
                        return new MpValue { Type = MpType.Float, F = BitConverter.Int64BitsToDouble((long)bits) };
                    }
                    case 0xcc: case 0xcd: case 0xce: case 0xcf:
                    {
                        ulong u = BeUint(1 << (c - 0xcc));
                        return new MpValue { Type = MpType.Int, U = u, I = u > long.MaxValue ? long.MaxValue : (long)u };
                    }
                    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
                    {
                        int width = 1 << (c - 0xd0);
                        ulong raw = BeUint(width);
                        int shift = 64 - 8 * width;
                        return Int(((long)(raw << shift)) >> shift);
                    }
                    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
                        Need(1);
                        Pos += 1;
                        return Bytes(MpType.Ext, (ulong)(1 << (c - 0xd4)));
                    case 0xd9: case 0xda: case 0xdb: return Bytes(MpType.Str, BeUint(1 << (c - 0xd9)));
                    case 0xdc: case 0xdd: return Seq(MpType.Array, BeUint(c == 0xdc ? 2 : 4), depth);
                    case 0xde: case 0xdf: return Seq(MpType.Map, BeUint(c == 0xde ? 2 : 4), depth);
                    default:
                        throw new ProtocolException(ErrorCode.Malformed, "byte 0x" + c.ToString("x2") + " at offset " + (Pos - 1) + " is not msgpack");
                }
            }
        }
    }
}
