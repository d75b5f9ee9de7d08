"""Views of the socket table: Listening, Connections, Keepalive."""
