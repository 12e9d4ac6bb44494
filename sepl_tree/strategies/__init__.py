"""Built-in selection strategies, each an ordinary plugin module."""
