// Drives the Unity client's AvatarStreamClient (clients/unity/Runtime/Client) against a real
// server, as tests/test_unity_client.py runs it under Mono:
//
//   mono LiveRunner.exe URL SESSION FRAMES
//
// Prints one JSON line per event: {"hello": ...}, then {"frame": ...} for each applied frame
// with its decoded morphs; after FRAMES frames at LOD 0 it asks for LOD 2 (SET_LOD) and stops
// after FRAMES frames at that level, printing {"done": ...} with the client's counters and a
// sample of the jitter buffer. Exit code 1 when it times out (30 s).
using System;
using System.Globalization;
using System.Text;
using System.Threading;
using AvatarEngine.Client;
using AvatarEngine.Protocol;

static class LiveRunner
{
    static readonly object Out = new object();

    static void Print(string line)
    {
        lock (Out) Console.Out.WriteLine(line);
    }

    static string Floats(float[] v)
    {
        var parts = new string[v.Length];
        for (int i = 0; i < v.Length; i++) parts[i] = ((double)v[i]).ToString("R", CultureInfo.InvariantCulture);
        return "[" + string.Join(",", parts) + "]";
    }

    static int Main(string[] args)
    {
        Console.OutputEncoding = new UTF8Encoding(false);
        int frames = int.Parse(args[2], CultureInfo.InvariantCulture);
        var client = new AvatarStreamClient(new ClientOptions { Url = args[0], Session = args[1], Audio = "off" });
        int atLod0 = 0, atLod2 = 0;
        var finished = new ManualResetEventSlim(false);
        client.FrameDecoded += (r, s) =>
        {
            Print("{\"frame\":{\"lod\":" + r.Lod + ",\"seq\":" + r.Seq + ",\"t\":" + r.T + ",\"keyframe\":" + (r.Keyframe ? "true" : "false") +
                  ",\"morphs\":" + Floats(s.Morphs) + ",\"channels\":" + Floats(s.Channels) + "}}");
            if (r.Lod == 0 && ++atLod0 == frames) ThreadPool.QueueUserWorkItem(_ => client.SetLod(2));
            if (r.Lod == 2 && ++atLod2 == frames) finished.Set();
        };
        client.Start();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        bool ok = false;
        while (DateTime.UtcNow < deadline)
        {
            ClientEvent ev;
            while (client.TryDequeue(out ev))
            {
                if (ev.Kind == ClientEventKind.Hello)
                {
                    Print("{\"hello\":{\"rig\":\"" + ev.Hello.Rig + "\",\"morphs\":" + ev.Hello.MorphNames.Length + ",\"channels\":" + ev.Hello.ChannelNames.Length +
                          ",\"first\":\"" + ev.Hello.MorphNames[0] + "\",\"audio\":\"" + ev.Hello.AudioName + "\"}}");
                }
                else if (ev.Kind == ClientEventKind.Connection)
                {
                    Print("{\"state\":\"" + ev.State.ToString().ToLowerInvariant() + "\"}");
                }
            }
            if (finished.Wait(20))
            {
                ok = true;
                break;
            }
        }
        HelloInfo h = client.Hello;
        var sample = new float[h == null ? 1 : h.MorphNames.Length + h.ChannelNames.Length];
        SampleStatus status = client.Sample(sample);
        Print("{\"done\":{\"ok\":" + (ok ? "true" : "false") + ",\"frames\":" + client.FramesReceived + ",\"errors\":" + client.ProtocolErrors +
              ",\"lod\":" + client.Lod + ",\"sample\":\"" + status.ToString().ToLowerInvariant() + "\",\"state\":\"" + client.State.ToString().ToLowerInvariant() + "\"}}");
        client.Stop();
        return ok ? 0 : 1;
    }
}
