// Reconnect delays: exponential growth with random jitter, so that many clients that lost the
// same server do not all come back in the same millisecond. The same rule as the Three.js
// client (clients/threejs/src/backoff.js):
//
//   delay(n) = min(MaxMs, InitialMs * Factor^n) * (1 - Jitter + Jitter * random())
//
// With the defaults (500 ms, x2, cap 15 s, jitter 0.5) the first retry waits 250..500 ms and
// from the seventh on 7.5..15 s.
using System;

namespace AvatarEngine.Client
{
    public sealed class Backoff
    {
        public readonly double InitialMs, MaxMs, Factor, Jitter;
        readonly Func<double> random;

        /// <summary>Failed attempts since the last reset.</summary>
        public int Attempts { get; private set; }

        public Backoff(double initialMs = 500, double maxMs = 15000, double factor = 2, double jitter = 0.5, Func<double> random = null)
        {
            if (!(initialMs > 0) || !(maxMs >= initialMs)) throw new ArgumentOutOfRangeException("initialMs", "need 0 < initialMs <= maxMs");
            if (!(factor >= 1)) throw new ArgumentOutOfRangeException("factor", "factor must be >= 1");
            if (!(jitter >= 0 && jitter <= 1)) throw new ArgumentOutOfRangeException("jitter", "jitter must be in 0..1");
            InitialMs = initialMs;
            MaxMs = maxMs;
            Factor = factor;
            Jitter = jitter;
            if (random == null)
            {
                var rng = new Random();
                random = rng.NextDouble;
            }
            this.random = random;
        }

        /// <summary>The un-jittered delay of the next attempt.</summary>
        public double Peek()
        {
            return Math.Min(MaxMs, InitialMs * Math.Pow(Factor, Math.Min(Attempts, 64)));
        }

        /// <summary>The delay (ms) to wait before the next attempt; counts the attempt.</summary>
        public double Next()
        {
            double b = Peek();
            Attempts += 1;
            return b * (1 - Jitter + Jitter * random());
        }

        /// <summary>Call once a connection proved healthy (a hello arrived).</summary>
        public void Reset()
        {
            Attempts = 0;
        }
    }
}
