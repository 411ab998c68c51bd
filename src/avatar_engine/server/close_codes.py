"""WebSocket close codes of every server endpoint (RFC 6455, and 4000 + the HTTP status that
means the same in the application range), so each is defined once; docs/server.md lists them.
"""

from __future__ import annotations

from typing import Final

CLOSE_UNSUPPORTED: Final = 1003
"""Text where binary is expected (or the reverse)."""
CLOSE_INVALID: Final = 1007
"""A message that is not valid for the endpoint (protocol error, odd PCM16 byte count, bad
base64 or JSON)."""
CLOSE_TOO_BIG: Final = 1009
CLOSE_BAD_REQUEST: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_NOT_FOUND: Final = 4404
CLOSE_CONFLICT: Final = 4409
"""The session already has what this connection would open (one voice bridge per session)."""
CLOSE_SESSION_GONE: Final = 4410
CLOSE_QUOTA: Final = 4429
"""A quota or a bound: publish rate, the voice queue."""
