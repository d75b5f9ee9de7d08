"""sockmon: a terminal monitor and lab for TCP sockets on Linux."""

__version__ = "0.1.0"
