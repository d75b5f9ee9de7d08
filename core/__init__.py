"""sockmon.core: socket lifecycle, kernel socket table and transitions. Never imports Textual."""
