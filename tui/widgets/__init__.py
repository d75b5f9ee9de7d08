"""Widgets shared by every pane: the virtual table and the status bar."""
