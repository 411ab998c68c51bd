// A small jitter buffer, the same algorithm as the Three.js client's
// (clients/threejs/src/jitter.js): frames go in as they arrive (irregularly), values come out
// at display rate, interpolated between the two received frames that bracket the render time.
//
// Time. Frames carry the server's stream time t (ms). Each arrival gives a sample of
//   offset = arrival (local ms) - t (server ms)
// The smallest offset seen is the least-delayed path; it climbs back slowly (Relax), so clock
// drift is followed within seconds. The render time is
//   renderT = now - offset - DelayMs          (DelayMs defaults to one frame interval)
// Past the newest frame values are extrapolated along the last segment for at most
// MaxExtrapolationMs, then held. Across a gap longer than 1.5 intervals (a chained stream sends
// nothing while the face is still) the older value is held until one interval before the newer
// frame, then interpolated over that interval.
//
// Layout: a ring of Capacity slots of Width floats (morphs then channels); nothing is
// allocated per frame. Not thread-safe: the caller locks (AvatarStreamClient does).
using System;

namespace AvatarEngine.Client
{
    public enum SampleStatus { Empty, Hold, Interpolate, Extrapolate }

    public sealed class JitterBuffer
    {
        public readonly int Width;
        public readonly int Capacity;
        readonly double[] times;
        readonly float[] values;
        readonly double? fixedDelay;
        readonly double? fixedExtra;
        public double Relax = 0.02;
        public double FrameIntervalMs { get; private set; }
        public double DelayMs { get; private set; }
        public double MaxExtrapolationMs { get; private set; }
        /// <summary>Frames held (at most Capacity).</summary>
        public int Count { get; private set; }
        /// <summary>Local minus server ms; NaN until the first frame.</summary>
        public double Offset { get; private set; }
        public long Pushed { get; private set; }
        /// <summary>Frames refused as older than the newest.</summary>
        public long Dropped { get; private set; }
        int head;

        public JitterBuffer(int width, int capacity = 8, double frameIntervalMs = 1000.0 / 60, double? delayMs = null, double? maxExtrapolationMs = null)
        {
            if (width <= 0 || capacity < 2) throw new ArgumentOutOfRangeException("width", "need width > 0 and capacity >= 2");
            Width = width;
            Capacity = capacity;
            times = new double[capacity];
            values = new float[capacity * width];
            fixedDelay = delayMs;
            fixedExtra = maxExtrapolationMs;
            SetFrameInterval(frameIntervalMs);
            Reset();
        }

        /// <summary>Follow the stream's frame rate (call when the LOD changes).</summary>
        public void SetFrameInterval(double ms)
        {
            FrameIntervalMs = ms;
            DelayMs = fixedDelay ?? ms;
            MaxExtrapolationMs = fixedExtra ?? Math.Min(ms, 50);
        }

        /// <summary>Forget every frame and the clock offset (a new stream, or a server restart).</summary>
        public void Reset()
        {
            Count = 0;
            head = -1;
            Offset = double.NaN;
            Pushed = 0;
            Dropped = 0;
        }

        public double NewestT { get { return Count > 0 ? times[head] : double.NaN; } }

        /// <summary>Store a frame; frames not newer than the newest are refused and counted.</summary>
        public bool Push(double t, float[] morphs, float[] channels, double arrivalMs)
        {
            if (Count > 0 && t <= times[head])
            {
                Dropped += 1;
                return false;
            }
            if (Count > 0 && t - times[head] > 10000) Reset();  // the stream restarted
            double s = arrivalMs - t;
            if (double.IsNaN(Offset) || s < Offset) Offset = s;
            else Offset += (s - Offset) * Relax;
            head = (head + 1) % Capacity;
            if (Count < Capacity) Count += 1;
            times[head] = t;
            int b = head * Width;
            int nm = Math.Min(morphs.Length, Width);
            Array.Copy(morphs, 0, values, b, nm);
            int nc = Math.Min(channels.Length, Width - nm);
            if (nc > 0) Array.Copy(channels, 0, values, b + nm, nc);
            Pushed += 1;
            return true;
        }

        /// <summary>The server stream time shown at local time nowMs (NaN before the first frame).</summary>
        public double RenderTime(double nowMs)
        {
            return nowMs - Offset - DelayMs;
        }

        /// <summary>Write the values for local time nowMs into output (length >= Width).</summary>
        public SampleStatus Sample(double nowMs, float[] output)
        {
            if (Count == 0) return SampleStatus.Empty;
            double rt = RenderTime(nowMs);
            int newest = head;
            int oldest = (newest - Count + 1 + Capacity) % Capacity;
            if (Count == 1 || rt <= times[oldest])
            {
                Array.Copy(values, (Count == 1 ? newest : oldest) * Width, output, 0, Width);
                return SampleStatus.Hold;
            }
            int prev = (newest - 1 + Capacity) % Capacity;
            if (rt >= times[newest])
            {
                double span = Math.Min(times[newest] - times[prev], FrameIntervalMs);
                double ahead = Math.Min(rt - times[newest], MaxExtrapolationMs);
                int a = newest * Width, b = prev * Width;
                if (ahead <= 0 || span <= 0)
                {
                    Array.Copy(values, a, output, 0, Width);
                    return SampleStatus.Hold;
                }
                float f = (float)(ahead / span);
                for (int i = 0; i < Width; i++) output[i] = values[a + i] + (values[a + i] - values[b + i]) * f;
                return SampleStatus.Extrapolate;
            }
            int k1 = newest, k0 = prev;
            for (int n = 1; n < Count - 1 && times[k0] > rt; n++)
            {
                k1 = k0;
                k0 = (k0 - 1 + Capacity) % Capacity;
            }
            double t1 = times[k1];
            double t0 = t1 - times[k0] > 1.5 * FrameIntervalMs ? t1 - FrameIntervalMs : times[k0];
            float g = rt <= t0 ? 0f : (float)((rt - t0) / (t1 - t0));
            int p = k0 * Width, q = k1 * Width;
            for (int i = 0; i < Width; i++) output[i] = values[p + i] + (values[q + i] - values[p + i]) * g;
            return SampleStatus.Interpolate;
        }
    }
}
