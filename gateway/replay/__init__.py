"""Replay: recorded sessions through the live pipeline (same ingest, spool, engine, page)."""
