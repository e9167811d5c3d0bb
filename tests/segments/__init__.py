"""Segments: membership, updates, examples."""
