"""The configuration: one YAML file validated against config/schema.json, with every default filled in.

``load`` and ``parse`` return a ``Config``; ``validate`` reports every problem with its path and line.
"""

from gateway.config.settings import RiderSettings, Settings, rider, riders
from gateway.config.validate import EMBEDDED, Config, fill_defaults, load, parse, schema, validate

__all__ = ["EMBEDDED", "Config", "RiderSettings", "Settings", "fill_defaults", "load", "parse", "rider", "riders",
           "schema", "validate"]
