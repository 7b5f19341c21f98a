"""Test doubles for the ports in maomao_cli.ports."""
