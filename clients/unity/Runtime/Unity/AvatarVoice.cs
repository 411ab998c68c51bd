// AvatarVoice: plays the session's voice through an AudioSource, on the face's clock.
//
// Put it on the GameObject with the AudioSource that should speak (the head, for 3D sound) and
// point Face at the AvatarFace. The voice arrives as PCM16 AUDIO messages (the client asks the
// server for audio=pcm: Unity has no Opus decoder for raw packets, and PCM16 at 16 kHz is
// 256 kbit/s, fine on a LAN; see docs/unity.md). OnAudioFilterRead runs on Unity's audio
// thread: it fills each block with the samples due when that block will be heard (the face's
// render time plus the DSP buffer latency), so the lips and the sound line up.
using AvatarEngine.Client;
using UnityEngine;

namespace AvatarEngine.Unity
{
    [AddComponentMenu("Avatar Engine/Avatar Voice")]
    [RequireComponent(typeof(AudioSource))]
    public sealed class AvatarVoice : MonoBehaviour
    {
        [Tooltip("The face whose voice this plays")]
        public AvatarFace face;

        [Range(0f, 2f)]
        public float volume = 1f;

        public bool mute;

        int outputRate;
        double latencyMs;
        volatile AvatarStreamClient client;

        void OnEnable()
        {
            outputRate = AudioSettings.outputSampleRate;
            int bufferLength, numBuffers;
            AudioSettings.GetDSPBufferSize(out bufferLength, out numBuffers);
            latencyMs = 1000.0 * bufferLength * numBuffers / Mathf.Max(1, outputRate);
            AudioSource source = GetComponent<AudioSource>();
            source.clip = null;  // the filter below is the generator
            source.loop = true;
            if (!source.isPlaying) source.Play();
        }

        void Update()
        {
            client = face != null ? face.Client : null;  // read on the main thread, used on the audio thread
        }

        void OnAudioFilterRead(float[] data, int channels)
        {
            AvatarStreamClient c = client;
            if (c == null || outputRate <= 0)
            {
                System.Array.Clear(data, 0, data.Length);
                return;
            }
            c.Voice.Read(data, channels, outputRate, c.RenderTime() + latencyMs);
            float gain = mute ? 0f : volume;
            if (gain != 1f)
            {
                for (int i = 0; i < data.Length; i++) data[i] *= gain;
            }
        }
    }
}
