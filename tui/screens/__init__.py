"""Modal screens: Detail, socket options, help."""
