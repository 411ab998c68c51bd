// AvatarFace: puts an avatar-engine session's face on a character.
//
// Add it to the character (Add Component > Avatar Engine > Avatar Face), set the server URL
// and session, drag the face's SkinnedMeshRenderers into Renderers and the head and eye bones
// into their slots. On each hello it binds the stream's morph names to the meshes' blendshape
// indices once (a MorphNameMap for names that differ; ARKit's three spellings match); each
// LateUpdate, on the main thread, it samples the jitter buffer and writes weights x 100 (Unity
// blendshape weights are 0..100) and turns the head and eye bones from the nine rotation
// channels (HeadYaw .. RightEyeRoll, engine units: 1.0 = DegreesPerUnit degrees).
// The network runs on its own thread (AvatarStreamClient); nothing here blocks a frame.
using System.Collections.Generic;
using AvatarEngine.Client;
using AvatarEngine.Protocol;
using UnityEngine;

namespace AvatarEngine.Unity
{
    [AddComponentMenu("Avatar Engine/Avatar Face")]
    [DisallowMultipleComponent]
    public sealed class AvatarFace : MonoBehaviour
    {
        /// <summary>How bone rotations combine with what else moves the bones.</summary>
        public enum BoneMode
        {
            /// <summary>Rotate from the pose the bones had when the stream was bound (no Animator).</summary>
            FromRestPose,
            /// <summary>Rotate on top of the pose an Animator wrote this frame.</summary>
            OnTopOfAnimation,
        }

        [Header("Connection")]
        [Tooltip("The avatar-engine server, e.g. http://127.0.0.1:8766")]
        public string serverUrl = "http://127.0.0.1:8766";

        [Tooltip("The session id (POST /sessions, or the Live Link subject name)")]
        public string session = "demo";

        [Tooltip("A JWT when the server requires one")]
        public string token = "";

        [Range(0, 3)]
        [Tooltip("Level of detail: 0 every morph at 60 fps ... 3 jaw, blink and head at 10 fps")]
        public int lod;

        [Tooltip("Pick the level of detail from the distance to the main camera (LodDistances)")]
        public bool autoLod;

        [Tooltip("Distances (m) beyond which levels 1, 2 and 3 are requested")]
        public Vector3 lodDistances = new Vector3(3f, 8f, 20f);

        [Tooltip("Ask for the voice (PCM16); an AvatarVoice component plays it")]
        public bool voice = true;

        [Header("Face")]
        public SkinnedMeshRenderer[] renderers = new SkinnedMeshRenderer[0];

        [Tooltip("Stream morph name -> blendshape name, for rigs whose names differ")]
        public MorphNameMap nameMap;

        [Header("Head and eyes")]
        public Transform head;
        public Transform leftEye;
        public Transform rightEye;
        public BoneMode boneMode = BoneMode.FromRestPose;

        [Tooltip("Degrees per engine unit about X (pitch), Y (yaw), Z (roll) for the head; negate an axis that turns the wrong way")]
        public Vector3 headDegreesPerUnit = new Vector3(40f, 40f, 40f);

        [Tooltip("Degrees per engine unit about X (pitch), Y (yaw), Z (roll) for the eyes")]
        public Vector3 eyeDegreesPerUnit = new Vector3(40f, 40f, 0f);

        /// <summary>The connection (null while disabled). Its Voice feeds AvatarVoice.</summary>
        public AvatarStreamClient Client { get; private set; }

        /// <summary>The connection's state as of this frame's Update.</summary>
        public ConnectionState Connection { get; private set; }

        /// <summary>The session's state pushed by the server (idle, thinking, ...).</summary>
        public string SessionState { get; private set; }

        public bool Speaking { get; private set; }

        /// <summary>Raised on the main thread when the session starts or stops speaking.</summary>
        public event System.Action<bool> SpeakingChanged;

        /// <summary>Raised on the main thread when the connection state changes.</summary>
        public event System.Action<ConnectionState> ConnectionChanged;

        struct Target
        {
            public SkinnedMeshRenderer Renderer;
            public int Shape;
            public int Morph;
        }

        readonly List<Target> targets = new List<Target>();
        float[] values = new float[0];
        int morphCount;
        int[] channelOf = new int[9];
        Quaternion headRest, leftRest, rightRest;

        void OnEnable()
        {
            var options = new ClientOptions
            {
                Url = serverUrl, Session = session, Token = token, Lod = lod, Audio = voice ? "pcm" : "off",
            };
            Client = new AvatarStreamClient(options);
            Client.Start();
        }

        void OnDisable()
        {
            if (Client != null) Client.Stop();
            Client = null;
            targets.Clear();
        }

        void Update()
        {
            if (Client == null) return;
            Connection = Client.State;  // reading it also turns Active into Degraded after a stall
            ClientEvent ev;
            while (Client.TryDequeue(out ev))
            {
                switch (ev.Kind)
                {
                    case ClientEventKind.Hello:
                        Bind(ev.Hello);
                        break;
                    case ClientEventKind.Connection:
                        if (ConnectionChanged != null) ConnectionChanged(ev.State);
                        break;
                    case ClientEventKind.SessionState:
                        SessionState = ev.Text;
                        break;
                    case ClientEventKind.Speaking:
                        Speaking = ev.Flag;
                        if (SpeakingChanged != null) SpeakingChanged(ev.Flag);
                        break;
                    case ClientEventKind.ServerError:
                    case ClientEventKind.ProtocolError:
                        Debug.LogWarning("avatar-engine " + session + ": " + ev.Text);
                        break;
                    case ClientEventKind.Closed:
                        if (ev.Code >= 4400) Debug.LogWarning("avatar-engine " + session + ": closed " + ev.Code + " " + ev.Text);
                        break;
                }
            }
            if (autoLod) PickLod();
            else if (lod != Client.Lod) Client.SetLod(lod);
        }

        void PickLod()
        {
            Camera cam = Camera.main;
            if (cam == null) return;
            Transform anchor = head != null ? head : transform;
            float d = Vector3.Distance(cam.transform.position, anchor.position);
            int want = d > lodDistances.z ? 3 : d > lodDistances.y ? 2 : d > lodDistances.x ? 1 : 0;
            if (want != Client.Lod) Client.SetLod(want);
        }

        /// <summary>Stream morph -> blendshape indices, once per hello (docs/unity.md, "Names").</summary>
        void Bind(HelloInfo hello)
        {
            targets.Clear();
            morphCount = hello.MorphNames.Length;
            values = new float[morphCount + hello.ChannelNames.Length];
            Dictionary<string, string> map = nameMap != null ? nameMap.ToDictionary() : null;
            var bound = new bool[morphCount];
            foreach (SkinnedMeshRenderer r in renderers)
            {
                if (r == null || r.sharedMesh == null) continue;
                Mesh mesh = r.sharedMesh;
                var shapes = new string[mesh.blendShapeCount];
                for (int s = 0; s < shapes.Length; s++) shapes[s] = mesh.GetBlendShapeName(s);
                int[] index = MorphBinder.Bind(hello.MorphNames, shapes, map);
                for (int m = 0; m < index.Length; m++)
                {
                    if (index[m] < 0) continue;
                    targets.Add(new Target { Renderer = r, Shape = index[m], Morph = m });
                    bound[m] = true;
                }
            }
            var missing = new List<string>();
            for (int m = 0; m < morphCount; m++)
            {
                if (!bound[m]) missing.Add(hello.MorphNames[m]);
            }
            for (int c = 0; c < channelOf.Length; c++) channelOf[c] = System.Array.IndexOf(hello.ChannelNames, ArkitNames.Rotations[c]);
            if (head != null) headRest = head.localRotation;
            if (leftEye != null) leftRest = leftEye.localRotation;
            if (rightEye != null) rightRest = rightEye.localRotation;
            string unbound = string.Join(", ", missing.GetRange(0, System.Math.Min(12, missing.Count)).ToArray());
            if (missing.Count > 12) unbound += " and " + (missing.Count - 12) + " more";
            Debug.Log("avatar-engine " + session + ": rig " + hello.Rig + ", " + (morphCount - missing.Count) + " of " + morphCount +
                      " morphs bound" + (missing.Count > 0 ? " (unbound: " + unbound + ")" : ""));
        }

        float Channel(int which)
        {
            int at = channelOf[which];
            return at < 0 ? 0f : values[morphCount + at];
        }

        static void Turn(Transform bone, Quaternion rest, BoneMode mode, Vector3 degrees, float yaw, float pitch, float roll)
        {
            if (bone == null) return;
            // Quaternion.Euler applies roll (Z), then pitch (X), then yaw (Y): Unity's and VMC's order.
            Quaternion delta = Quaternion.Euler(pitch * degrees.x, yaw * degrees.y, roll * degrees.z);
            bone.localRotation = (mode == BoneMode.FromRestPose ? rest : bone.localRotation) * delta;
        }

        void LateUpdate()
        {
            if (Client == null || values.Length == 0) return;
            if (Client.Sample(values) == SampleStatus.Empty) return;
            for (int k = 0; k < targets.Count; k++)
            {
                Target t = targets[k];
                t.Renderer.SetBlendShapeWeight(t.Shape, values[t.Morph] * 100f);
            }
            Turn(head, headRest, boneMode, headDegreesPerUnit, Channel(0), Channel(1), Channel(2));
            Turn(leftEye, leftRest, boneMode, eyeDegreesPerUnit, Channel(3), Channel(4), Channel(5));
            Turn(rightEye, rightRest, boneMode, eyeDegreesPerUnit, Channel(6), Channel(7), Channel(8));
        }
    }
}
