"""ringlet's version, in one place: pyproject.toml reads it at build time
(``[tool.setuptools.dynamic]``) and ``ringlet.__version__`` imports it."""

__version__ = "0.1.0"
