"""The socket lab: lifecycle calls, options, and the client and server engines."""
