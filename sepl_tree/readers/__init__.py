"""Built-in pseudo-label readers, one plugin module per baseline output format."""
