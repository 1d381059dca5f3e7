"""Decoding playground engine."""
