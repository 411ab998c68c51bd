"""The shell's outbound side: WebSocket/WebRTC fan-out and egress adapters (Live Link, VMC out)."""
