"""The segment engine: pure metrics, segment assembly from gate crossings, normalization."""
