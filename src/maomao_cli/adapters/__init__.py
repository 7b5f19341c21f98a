"""Adapters behind small interfaces: etcd store, container runner, git."""
