"""sersyncpy: real-time one-way directory replication over rsync, successor to sersync 2.5."""

__version__ = "0.1.0"
