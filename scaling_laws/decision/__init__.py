"""Decisions from a fit: delta* and its interval, compute multipliers, validation, reports and plots."""
