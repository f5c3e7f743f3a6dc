"""Readers turn recorded files (FIT, Axiamo Excel, Freelap CSV) into typed data; no I/O elsewhere."""
