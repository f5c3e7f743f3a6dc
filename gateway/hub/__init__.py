"""The hub: every box's stream from Kafka into PostgreSQL, and the same page over it."""
