"""Data shipped in the package: the model catalog (``catalog.toml``)."""
