"""Recorded and hand-made samples the unit tests share (data files beside them)."""
