"""The command line: Typer wiring (app.py) and one module per command group."""
