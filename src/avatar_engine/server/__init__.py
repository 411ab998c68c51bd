"""The shell around the engine: HTTP/WebSocket app, auth, config, the real-time tick."""
