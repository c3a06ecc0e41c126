"""trackstore: one store for every tracking experiment."""
__version__ = "0.1.0"
