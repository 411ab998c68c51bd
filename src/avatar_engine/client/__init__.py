"""Python client SDK: subscribe to a session's stream (WebSocket or WebRTC) and decode it."""

from avatar_engine.client.subscriber import DecodedFrame, subscribe_rtc, subscribe_ws

__all__ = ["DecodedFrame", "subscribe_rtc", "subscribe_ws"]
