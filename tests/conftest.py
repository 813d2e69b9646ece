"""Suite-wide configuration."""

pytest_plugins = ["pytester"]
