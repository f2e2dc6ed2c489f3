"""edibuild: tailored Debian OS images and dev containers, built as a doit task graph."""

__version__ = "0.1.0"
