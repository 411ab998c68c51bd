// Runs the Unity package's AvatarFace and AvatarVoice against a real server with the stub
// UnityEngine (UnityEngine.cs), calling the Unity messages the engine would call
// (OnEnable, Update, LateUpdate every 16 ms, OnAudioFilterRead), as tests/test_unity_client.py
// does under Mono:
//
//   mono FaceRunner.exe URL SESSION SECONDS
//
// The mesh has a few of cc4-extended's morphs spelled the way exporters spell them, and one
// renamed through a MorphNameMap. After SECONDS it prints one JSON line: every blendshape's
// weight, the head bone's rotation, the voice packets received and played, the non-zero
// samples OnAudioFilterRead produced, and the log lines.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Threading;
using AvatarEngine.Unity;
using UnityEngine;

static class FaceRunner
{
    static void Call(object target, string method, params object[] args)
    {
        target.GetType().GetMethod(method, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public).Invoke(target, args);
    }

    static string Q(string s)
    {
        return "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
    }

    static string F(double v)
    {
        return v.ToString("R", CultureInfo.InvariantCulture);
    }

    static int Main(string[] args)
    {
        double seconds = double.Parse(args[2], CultureInfo.InvariantCulture);
        var go = new GameObject { name = "Character" };
        var mesh = new Mesh { name = "Face" };
        mesh.shapes.AddRange(new[] { "jaw_open", "Body.Eye_Blink_L", "EYE_BLINK_R", "MyMouthWide", "Unrelated" });
        var smr = go.AddComponent<SkinnedMeshRenderer>();
        smr.sharedMesh = mesh;
        var map = new MorphNameMap();
        map.entries.Add(new MorphNameMap.Entry { stream = "Mouth_Stretch_L", blendShape = "MyMouthWide" });
        var head = new GameObject().AddComponent<Transform>();
        var face = go.AddComponent<AvatarFace>();
        face.serverUrl = args[0];
        face.session = args[1];
        face.renderers = new[] { smr };
        face.nameMap = map;
        face.head = head;
        var audio = go.AddComponent<AudioSource>();
        var voice = go.AddComponent<AvatarVoice>();
        voice.face = face;
        Call(face, "OnEnable");
        Call(voice, "OnEnable");
        var block = new float[2 * 1024];
        long audible = 0;
        DateTime end = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < end)
        {
            Call(face, "Update");
            Call(voice, "Update");
            Call(face, "LateUpdate");
            Call(voice, "OnAudioFilterRead", block, 2);
            foreach (float s in block)
            {
                if (s != 0f) audible += 1;
            }
            Thread.Sleep(16);
        }
        var weights = new List<string>();
        for (int i = 0; i < mesh.shapes.Count; i++)
        {
            float w;
            weights.Add(Q(mesh.shapes[i]) + ":" + (smr.weights.TryGetValue(i, out w) ? F(w) : "null"));
        }
        Quaternion r = head.localRotation;
        var logs = new List<string>();
        foreach (string line in UnityEngine.Debug.logged) logs.Add(Q(line));
        Console.OutputEncoding = new UTF8Encoding(false);
        Console.WriteLine("{\"weights\":{" + string.Join(",", weights.ToArray()) + "},\"head\":[" + F(r.x) + "," + F(r.y) + "," + F(r.z) + "," + F(r.w) +
                          "],\"state\":" + Q(face.Client.State.ToString().ToLowerInvariant()) + ",\"audio_nonzero\":" + audible + ",\"audio_playing\":" + (audio.isPlaying ? "true" : "false") +
                          ",\"voice_packets\":" + face.Client.AudioPackets + ",\"voice_played\":" + face.Client.Voice.PacketsPlayed +
                          ",\"log\":[" + string.Join(",", logs.ToArray()) + "]}");
        Call(face, "OnDisable");
        return 0;
    }
}
