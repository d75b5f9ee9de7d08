"""Views of the socket lab: Client, Server, Timeline."""
