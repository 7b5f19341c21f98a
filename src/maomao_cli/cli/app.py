"""The whole command line: every command of the table in cli/root.py, wired on its root.
Tests, shell completion and whatever cli/main.py does not recognise run this app."""

from __future__ import annotations

from .root import COMMANDS, app, wire

__all__ = ["app"]


for _name, _command in COMMANDS.items():
    wire(app, _name, _command)
