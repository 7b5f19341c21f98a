"""The API's routes, one module per resource group; `api/app.py` includes them in order.

Each route parses its body (pydantic, strict), calls service methods only, and returns
records; errors go through `api/errors.py`.
"""
