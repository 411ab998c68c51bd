// AvatarStreamClient: subscribes to an avatar-engine session over WebSocket
// (System.Net.WebSockets.ClientWebSocket: Unity desktop, mobile and consoles with the .NET 4.x
// or .NET Standard 2.1 profile; WebGL has no sockets, see docs/unity.md), decodes the stream on
// its own thread and hands the main thread what it needs:
//   - Sample(output): the face at the current render time, from the jitter buffer;
//   - TryDequeue(out ev): hellos (rebind), connection and session state, speaking, emotion,
//     voice cuts, protocol errors, closes;
//   - Voice: the PCM16 voice queue, read by the audio thread on the same clock.
// It reconnects with exponential backoff and jitter, answers need_keyframe with
// REQUEST_KEYFRAME (at most one per 100 ms, docs/protocol.md 3.4), answers PING with PONG,
// and sends SET_LOD for SetLod. Close codes that retrying cannot fix (4401, 4403, 4410, and
// 4404 before the stream was ever up) end in ConnectionState.Error.
// No UnityEngine dependency: the same code runs under Mono in the repository's tests.
using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;
using AvatarEngine.Protocol;

namespace AvatarEngine.Client
{
    public enum ConnectionState { Idle, Connecting, Ready, Active, Degraded, Error, Disconnected }

    public enum ClientEventKind { Hello, Connection, SessionState, Speaking, Emotion, VoiceCut, ServerError, ProtocolError, Closed }

    /// <summary>Something the main thread should know; fields by Kind.</summary>
    public sealed class ClientEvent
    {
        public ClientEventKind Kind;
        public HelloInfo Hello;
        public ConnectionState State;
        /// <summary>SessionState: the state name; Emotion: its name; errors and Closed: the reason.</summary>
        public string Text;
        public bool Flag;
        public double Number;
        public int Code;
        public double T;
    }

    public sealed class ClientOptions
    {
        /// <summary>The server, e.g. http://127.0.0.1:8766 (ws:// and https:// work too).</summary>
        public string Url = "http://127.0.0.1:8766";
        public string Session = "demo";
        public int Lod;
        public int Bits = 8;
        /// <summary>"pcm" to hear the voice (PCM16: Unity plays it without a codec), "off" for none.
        /// Opus is never requested: the client has no Opus decoder.</summary>
        public string Audio = "pcm";
        /// <summary>A JWT for servers with auth (sent as Authorization: Bearer).</summary>
        public string Token = "";
        /// <summary>No frame for this long: ConnectionState.Degraded.</summary>
        public double StallMs = 1000;
        public double ReconnectInitialMs = 500;
        public double ReconnectMaxMs = 15000;
        /// <summary>Frames kept by the jitter buffer.</summary>
        public int JitterCapacity = 8;
    }

    public sealed class AvatarStreamClient : IDisposable
    {
        public readonly ClientOptions Options;
        public readonly VoiceBuffer Voice = new VoiceBuffer();
        readonly Func<double> clock;
        readonly Backoff backoff;
        readonly object sync = new object();
        readonly Decoder decoder = new Decoder();
        readonly ConcurrentQueue<ClientEvent> events = new ConcurrentQueue<ClientEvent>();
        readonly SemaphoreSlim sendLock = new SemaphoreSlim(1, 1);
        readonly byte[] buffer = new byte[Limits.MaxMessageBytes];
        CancellationTokenSource cts;
        Task loop;
        ClientWebSocket socket;
        JitterBuffer jitter;
        HelloInfo hello;
        uint sid;
        int lod;
        bool wasActive;
        double lastFrameAt = double.NaN;
        double lastKeyframeRequest = double.NegativeInfinity;
        ConnectionState state = ConnectionState.Idle;

        /// <summary>Called on the network thread for every applied frame, with the decoded stream
        /// (copy what you keep: the arrays change with the next frame). For recorders and tests;
        /// renderers use Sample.</summary>
        public event Action<Result, Stream> FrameDecoded;

        public long FramesReceived, FramesStale, KeyframesRequested, ProtocolErrors, BytesReceived, Reconnects, AudioPackets;

        public AvatarStreamClient(ClientOptions options, Func<double> clockMs = null)
        {
            Options = options;
            lod = options.Lod;
            if (clockMs == null)
            {
                Stopwatch watch = Stopwatch.StartNew();
                clockMs = () => watch.Elapsed.TotalMilliseconds;
            }
            clock = clockMs;
            backoff = new Backoff(options.ReconnectInitialMs, options.ReconnectMaxMs);
        }

        /// <summary>The WebSocket URL of a session's stream (docs/server.md, "Streams").</summary>
        public static Uri StreamUri(string url, string session, int lod, int bits, string audio)
        {
            string b = url.TrimEnd('/');
            if (b.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) b = "ws://" + b.Substring(7);
            else if (b.StartsWith("https://", StringComparison.OrdinalIgnoreCase)) b = "wss://" + b.Substring(8);
            return new Uri(b + "/sessions/" + Uri.EscapeDataString(session) + "/stream?lod=" + lod + "&mode=chained&bits=" + bits + "&audio=" + Uri.EscapeDataString(audio));
        }

        /// <summary>The current stream's hello (null before the first).</summary>
        public HelloInfo Hello { get { lock (sync) return hello; } }

        public int Lod { get { lock (sync) return lod; } }

        /// <summary>Connection state; Active turns Degraded when no frame came for StallMs.</summary>
        public ConnectionState State
        {
            get
            {
                lock (sync)
                {
                    if (state == ConnectionState.Active && clock() - lastFrameAt > Options.StallMs) SetState(ConnectionState.Degraded);
                    return state;
                }
            }
        }

        public void Start()
        {
            if (loop != null) return;
            cts = new CancellationTokenSource();
            CancellationToken token = cts.Token;
            loop = Task.Run(() => Run(token));
        }

        /// <summary>Close the connection and stop reconnecting (waits up to timeoutMs).</summary>
        public void Stop(int timeoutMs = 2000)
        {
            if (loop == null) return;
            cts.Cancel();
            ClientWebSocket ws = socket;
            if (ws != null) ws.Abort();
            try
            {
                loop.Wait(timeoutMs);
            }
            catch (AggregateException)
            {
                // cancelled: nothing to report
            }
            loop = null;
            lock (sync) SetState(ConnectionState.Disconnected);
        }

        public void Dispose()
        {
            Stop();
        }

        public bool TryDequeue(out ClientEvent ev)
        {
            return events.TryDequeue(out ev);
        }

        /// <summary>The face at the current render time: morphs then channels (rig order) in output,
        /// which needs Hello.MorphNames.Length + Hello.ChannelNames.Length floats. Empty (output
        /// untouched) before the first frame, or when a new hello changed the size and the caller
        /// has not rebound yet.</summary>
        public SampleStatus Sample(float[] output)
        {
            lock (sync)
            {
                if (jitter == null || output.Length < jitter.Width) return SampleStatus.Empty;
                return jitter.Sample(clock(), output);
            }
        }

        /// <summary>The stream time (ms) the face shows now; NaN before the first frame. Any thread.</summary>
        public double RenderTime()
        {
            lock (sync)
            {
                return jitter == null || jitter.Count == 0 ? double.NaN : jitter.RenderTime(clock());
            }
        }

        /// <summary>Ask for another level of detail (0 every morph at 60 fps ... 3 jaw, blink, head at 10 fps).</summary>
        public void SetLod(int level)
        {
            if (level < 0 || level >= Limits.LodLevels) throw new ArgumentOutOfRangeException("level");
            uint s;
            lock (sync)
            {
                if (level == lod || hello == null) { lod = level; return; }
                lod = level;
                decoder.ExpectLod(sid, level);
                s = sid;
            }
            Send(Encode.Control(Op.SetLod, s, level));
        }

        void Emit(ClientEvent ev)
        {
            events.Enqueue(ev);
        }

        void SetState(ConnectionState s)
        {
            if (s == state) return;
            state = s;
            Emit(new ClientEvent { Kind = ClientEventKind.Connection, State = s });
        }

        static bool Fatal(int code, bool wasUp)
        {
            // 4404 after the stream was up is retried: a restarted server forgets sessions until
            // their owner recreates them (the Three.js client's rule).
            return code == 4400 || code == 4401 || code == 4403 || code == 4410 || (code == 4404 && !wasUp);
        }

        async Task Run(CancellationToken ct)
        {
            while (!ct.IsCancellationRequested)
            {
                lock (sync) SetState(ConnectionState.Connecting);
                var ws = new ClientWebSocket();
                if (!string.IsNullOrEmpty(Options.Token)) ws.Options.SetRequestHeader("Authorization", "Bearer " + Options.Token);
                socket = ws;
                int closeCode = 0;
                string reason = "";
                try
                {
                    int level;
                    lock (sync) level = lod;
                    await ws.ConnectAsync(StreamUri(Options.Url, Options.Session, level, Options.Bits, Options.Audio), ct).ConfigureAwait(false);
                    await Receive(ws, ct).ConfigureAwait(false);
                    closeCode = ws.CloseStatus.HasValue ? (int)ws.CloseStatus.Value : 1006;
                    reason = ws.CloseStatusDescription ?? "";
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (Exception e)  // WebSocketException, socket errors: retried
                {
                    closeCode = ws.CloseStatus.HasValue ? (int)ws.CloseStatus.Value : 1006;
                    reason = e.Message;
                }
                finally
                {
                    socket = null;
                    ws.Dispose();
                }
                if (ct.IsCancellationRequested) break;
                Emit(new ClientEvent { Kind = ClientEventKind.Closed, Code = closeCode, Text = reason });
                bool fatal;
                lock (sync)
                {
                    fatal = Fatal(closeCode, wasActive);
                    SetState(fatal ? ConnectionState.Error : ConnectionState.Disconnected);
                }
                if (fatal) return;
                Reconnects += 1;
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(backoff.Next()), ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        async Task Receive(ClientWebSocket ws, CancellationToken ct)
        {
            while (ws.State == WebSocketState.Open)
            {
                int size = 0;
                WebSocketReceiveResult r;
                do
                {
                    if (size >= buffer.Length)
                    {
                        await ws.CloseAsync(WebSocketCloseStatus.MessageTooBig, "message over 64 KiB", ct).ConfigureAwait(false);
                        return;
                    }
                    r = await ws.ReceiveAsync(new ArraySegment<byte>(buffer, size, buffer.Length - size), ct).ConfigureAwait(false);
                    if (r.MessageType == WebSocketMessageType.Close) return;
                    size += r.Count;
                } while (!r.EndOfMessage);
                if (r.MessageType != WebSocketMessageType.Binary) continue;
                BytesReceived += size;
                await Handle(size).ConfigureAwait(false);
            }
        }

        async Task Handle(int size)
        {
            byte[] reply = null;
            double now = clock();
            lock (sync)
            {
                Result r = decoder.Feed(buffer, 0, size);
                switch (r.Kind)
                {
                    case Kind.Hello:
                        OnHello(r);
                        if (r.Hello.Audio == AudioCodec.Opus && Options.Audio != "off")
                        {
                            reply = Encode.SetAudio(r.Sid, AudioRequest.Pcm16);  // no Opus decoder here
                        }
                        break;
                    case Kind.Frame:
                        if (r.Sid != sid || jitter == null) break;
                        FramesReceived += 1;
                        Stream s = decoder.GetStream(r.Sid);
                        if (r.Keyframe) jitter.SetFrameInterval(1000.0 / hello.Lods[r.Lod].Fps);
                        jitter.Push(r.T, s.Morphs, s.Channels, now);
                        lastFrameAt = now;
                        wasActive = true;
                        SetState(ConnectionState.Active);
                        Action<Result, Stream> hook = FrameDecoded;
                        if (hook != null) hook(r, s);
                        break;
                    case Kind.Stale:
                        FramesStale += 1;
                        break;
                    case Kind.NeedKeyframe:
                        if (now - lastKeyframeRequest >= 100)
                        {
                            lastKeyframeRequest = now;
                            KeyframesRequested += 1;
                            reply = Encode.Control(Op.RequestKeyframe, r.Sid, r.Lod);
                        }
                        break;
                    case Kind.Audio:
                        if (r.Sid != sid || r.Codec != AudioCodec.Pcm16) break;
                        AudioPackets += 1;
                        Voice.Push(r.Seq, r.T, r.Payload);
                        break;
                    case Kind.Event:
                        OnEvent(r);
                        break;
                    case Kind.Ping:
                        reply = Encode.Ping(r.Nonce, (ulong)Math.Max(0, now), true);
                        break;
                    case Kind.ErrorMessage:
                        Emit(new ClientEvent { Kind = ClientEventKind.ServerError, Code = r.Code, Text = r.Text });
                        break;
                    case Kind.Error:
                        ProtocolErrors += 1;
                        Emit(new ClientEvent { Kind = ClientEventKind.ProtocolError, Text = r.Detail });
                        break;
                }
            }
            if (reply != null) await SendAsync(reply).ConfigureAwait(false);
        }

        void OnHello(Result r)
        {
            HelloInfo h = r.Hello;
            sid = r.Sid;
            hello = h;
            jitter = new JitterBuffer(h.MorphNames.Length + h.ChannelNames.Length, Options.JitterCapacity, 1000.0 / h.Lods[lod].Fps);
            Voice.Configure(h.Audio == AudioCodec.Pcm16 ? h.AudioRate : 16000);
            backoff.Reset();
            SetState(ConnectionState.Ready);
            Emit(new ClientEvent { Kind = ClientEventKind.Hello, Hello = h });
        }

        void OnEvent(Result r)
        {
            switch ((EventKind)r.Event)
            {
                case EventKind.State:
                    Emit(new ClientEvent { Kind = ClientEventKind.SessionState, Text = r.Text, T = r.T });
                    break;
                case EventKind.Speaking:
                    Emit(new ClientEvent { Kind = ClientEventKind.Speaking, Flag = r.Flag, T = r.T });
                    break;
                case EventKind.Emotion:
                    Emit(new ClientEvent { Kind = ClientEventKind.Emotion, Text = r.Text, Number = r.Number, T = r.T });
                    break;
                case EventKind.VoiceCut:
                    Voice.Cut(r.T, r.Seq);
                    Emit(new ClientEvent { Kind = ClientEventKind.VoiceCut, T = r.T, Code = r.Seq });
                    break;
            }
        }

        void Send(byte[] message)
        {
            Task.Run(() => SendAsync(message));
        }

        async Task SendAsync(byte[] message)
        {
            ClientWebSocket ws = socket;
            if (ws == null || ws.State != WebSocketState.Open) return;
            await sendLock.WaitAsync().ConfigureAwait(false);
            try
            {
                await ws.SendAsync(new ArraySegment<byte>(message), WebSocketMessageType.Binary, true, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // the receive loop sees the broken connection and reconnects
            }
            finally
            {
                sendLock.Release();
            }
        }
    }
}
