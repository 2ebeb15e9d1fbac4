"""crawler: a concurrent web crawler for the terminal, on four Python concurrency models."""

__version__ = "0.1.0"
