"""Replay safety: recorded histories of real GameDays, replayed against the current workflow code."""
