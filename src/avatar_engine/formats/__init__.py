"""Sans-I/O readers and writers for third-party capture formats (bytes and text in, arrays out)."""
