"""The live state diagram (tab 8, key D): TCP's state machine drawn with box-drawing characters, fed by
the core's `StateDiagram` (core/table/statemachine.py). Neither tui.table nor tui.lab imports it, nor it
them: the app routes each update and the followed 4-tuple to it."""
