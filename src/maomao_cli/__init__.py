"""MAO-MAO: collaborative periodic data collection over etcd, Docker and git."""

__version__ = "0.1.0"
