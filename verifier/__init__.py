"""verifier: checks the FIN/ACK/RST sequences and socket events that really happen on the wire."""

__version__ = "0.1.0"
