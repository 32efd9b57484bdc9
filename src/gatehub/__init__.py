"""gatehub: a self-hosted IoT gateway hub."""

__version__ = "0.1.0"
