"""The HTTP API of `maomao serve`: the 2019 routes and the typed /v1/ API.

Importing this package pulls in FastAPI and pydantic, so only `maomao serve` (and the
tests) import it; the rest of the CLI never does.
"""
