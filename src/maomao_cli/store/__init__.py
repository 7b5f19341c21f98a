"""The key-value store port (base.py) and its adapters: etcd (etcd.py) and memory (memory.py)."""
