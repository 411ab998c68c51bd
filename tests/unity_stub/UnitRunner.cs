// Checks of the Unity client's pure C# parts that need no server (tests/test_unity_client.py
// runs it under Mono): name binding with ARKit's three spellings and a name map, the voice
// buffer's schedule on the face's clock, voice cuts, and the jitter buffer. Prints one line
// per failed check and exits 1 if any failed; prints "ok N" otherwise.
using System;
using System.Collections.Generic;
using AvatarEngine.Client;
using AvatarEngine.Protocol;

static class UnitRunner
{
    static int checks, failures;

    static void Check(bool ok, string what)
    {
        checks += 1;
        if (ok) return;
        failures += 1;
        Console.WriteLine("FAIL " + what);
    }

    static byte[] Pcm(int samples, short value)
    {
        var b = new byte[2 * samples];
        for (int i = 0; i < samples; i++)
        {
            b[2 * i] = (byte)value;
            b[2 * i + 1] = (byte)(value >> 8);
        }
        return b;
    }

    static void Binding()
    {
        string[] stream = { "eyeBlinkLeft", "EyeBlinkRight", "jawOpen", "mouthLeft", "Jaw_Open", "V_Open", "browInnerUp" };
        string[] shapes = { "eyeBlink_L", "eyeblink_r", "Head.jawOpen", "mouthLeft", "jaw_open", "MouthOpenCustom" };
        var map = new Dictionary<string, string> { { "V_Open", "MouthOpenCustom" } };
        int[] got = MorphBinder.Bind(stream, shapes, map);
        int[] want = { 0, 1, 2, 3, 4, 5, -1 };
        for (int i = 0; i < want.Length; i++) Check(got[i] == want[i], "bind " + stream[i] + " -> " + got[i] + ", want " + want[i]);
        Check(ArkitNames.Canonical("MouthSmile_L") == "mouthSmileLeft", "ARKit _L spelling");
        Check(ArkitNames.Canonical("jaw_L") == null, "jawLeft is a direction, never jaw_L");
        Check(MorphBinder.Unmatched(stream, got).Count == 1, "one unmatched name");
    }

    static void Voice()
    {
        var v = new VoiceBuffer();
        v.Configure(16000);
        // Three contiguous 20 ms packets (320 samples) from t = 1000 ms, then one after a gap.
        v.Push(7, 1000, Pcm(320, 16384));
        v.Push(8, 1020, Pcm(320, 16384));
        v.Push(9, 1040, Pcm(320, 16384));
        v.Push(10, 1200, Pcm(320, -16384));
        var block = new float[160];  // 10 ms at 16 kHz, mono
        v.Read(block, 1, 16000, 990);
        Check(block[0] == 0f && block[159] == 0f, "silent before the first packet's t");
        v.Read(block, 1, 16000, 1000);
        Check(Math.Abs(block[0] - 0.5f) < 1e-6 && Math.Abs(block[159] - 0.5f) < 1e-6, "plays at t: " + block[0]);
        var rest = new float[16 * 60];  // 1010 .. 1070 ms: the rest of the run (to 1060), then silence
        v.Read(rest, 1, 16000, 1010);
        Check(Math.Abs(rest[16 * 50 - 1] - 0.5f) < 1e-6, "contiguous packets play back to back");
        Check(rest[16 * 50 + 1] == 0f, "silence after the run ends");
        Check(v.PacketsPlayed == 3, "three packets played, got " + v.PacketsPlayed);
        // The next utterance starts when the clock reaches its t (not right after the last one).
        var gap = new float[16 * 10];
        v.Read(gap, 1, 16000, 1150);
        Check(gap[0] == 0f, "the gap stays silent");
        v.Read(gap, 1, 16000, 1200);
        Check(Math.Abs(gap[0] + 0.5f) < 1e-6, "the next utterance is anchored at its t");
        // Stereo output at 48 kHz: each input sample spans three output frames on both channels.
        v.Configure(16000);
        v.Push(1, 0, Pcm(320, 8192));
        var stereo = new float[2 * 480];
        v.Read(stereo, 2, 48000, 0);
        Check(Math.Abs(stereo[0] - 0.25f) < 1e-6 && stereo[0] == stereo[1] && Math.Abs(stereo[959] - 0.25f) < 1e-6, "resampled to stereo 48 kHz");
        // VOICE_CUT at 1015 with next_seq 23: queued packets at or after 1015 or older than 23
        // go (all of them), and the playing one stops at 1015.
        v.Configure(16000);
        v.Push(20, 1000, Pcm(320, 16384));
        v.Push(21, 1020, Pcm(320, 16384));
        v.Push(22, 1040, Pcm(320, 16384));
        v.Read(block, 1, 16000, 1000);
        v.Cut(1015, 23);
        Check(v.Queued == 0 && v.PacketsCut == 2, "cut drops the queued packets (queued " + v.Queued + ")");
        var after = new float[16 * 40];
        v.Read(after, 1, 16000, 1010);
        Check(Math.Abs(after[16 * 4] - 0.5f) < 1e-6 && after[16 * 5 + 1] == 0f, "playing stops at the cut time");
        v.Push(23, 1100, Pcm(320, 16384));
        v.Read(block, 1, 16000, 1100);
        Check(Math.Abs(block[0] - 0.5f) < 1e-6, "the next utterance plays after a cut");
        // Late packets entirely in the past are dropped, not played late.
        v.Configure(16000);
        v.Push(30, 0, Pcm(320, 16384));
        v.Read(block, 1, 16000, 500);
        Check(block[0] == 0f && v.PacketsDroppedLate == 1, "a packet already past is dropped");
        // Bounded queue.
        v.Configure(16000);
        for (int s = 0; s < VoiceBuffer.MaxPackets + 5; s++) v.Push(s, 20 * s, Pcm(320, 1));
        Check(v.Queued == VoiceBuffer.MaxPackets && v.PacketsDroppedOverflow == 5, "the queue is bounded");
    }

    static void Jitter()
    {
        var j = new JitterBuffer(1, 8, 20);
        var outv = new float[1];
        Check(j.Sample(0, outv) == SampleStatus.Empty, "empty before frames");
        j.Push(100, new[] { 0f }, new float[0], 1000);
        j.Push(120, new[] { 1f }, new float[0], 1020);
        // offset = 900, delay 20: at local 1030 the render time is 110, halfway.
        Check(j.Sample(1030, outv) == SampleStatus.Interpolate && Math.Abs(outv[0] - 0.5f) < 1e-6, "interpolates: " + outv[0]);
        Check(!j.Push(110, new[] { 0f }, new float[0], 1040) && j.Dropped == 1, "older frames are refused");
    }

    static void Encoders()
    {
        byte[] sub = Encode.Subscribe("demo", 2, Mode.Chained, 8, AudioRequest.Pcm16);
        Check(BitConverter.ToString(sub) == "97-04-00-A4-64-65-6D-6F-02-00-08-02", "subscribe with audio: " + BitConverter.ToString(sub));
        Check(BitConverter.ToString(Encode.SetAudio(3, AudioRequest.Pcm16)) == "94-04-05-03-02", "set audio");
        var d = new Decoder();
        Result r = d.Feed(Encode.Control(Op.Ack, 70000, 1, 65535));
        Check(r.Kind == Kind.Control && r.Sid == 70000 && r.Seq == 65535, "ack round trip");
    }

    static int Main()
    {
        Binding();
        Voice();
        Jitter();
        Encoders();
        if (failures > 0) return 1;
        Console.WriteLine("ok " + checks);
        return 0;
    }
}
