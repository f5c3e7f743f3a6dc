"""Sources turn hardware or files into PowerSample and GateCrossing events for ingest.

A source knows nothing of riders' names or metrics; it reports its own link state to the status
board and hands events to a ``submit`` callable (ingest's), which never blocks.
"""
