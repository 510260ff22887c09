"""The wire core: pure functions from capture bytes to connections, outcomes and transcripts (no I/O)."""
