"""Docket's generator: protoc-gen-docket (the protoc plugin) and docket-gen (the CLI).

The plugin reads the graph of every proto service, checks its wiring and
renders ``<file>_docket.py`` modules; the CLI runs protoc with the protobuf,
mypy-protobuf and Docket outputs at once.
"""

__version__ = "0.1.0"
