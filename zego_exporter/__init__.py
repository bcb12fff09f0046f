"""zego-exporter: a Prometheus exporter for ZEGOCLOUD Digital Human stream tasks.

The package root only names the version; it must never import the CLI or start anything.
"""

__version__ = "0.1.0"
