"""Completing a session with the riders' own recordings (head units, loggers): whose file it is,
how its clock lies against the boxes', and which of its samples fill what the boxes did not hear.
Pure functions over arrays; the box's and the hub's ``session add-files`` put them to work."""
