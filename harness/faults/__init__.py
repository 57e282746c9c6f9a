"""Faults: each kind turns into driver operations with an exact, journalled undo."""
