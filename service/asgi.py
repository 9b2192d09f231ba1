"""ASGI entry point for uvicorn (`uvicorn service.asgi:app`): settings from MNIST_* variables.

Only building the app happens at import; models load in its lifespan.
"""

from service.app import create_app

app = create_app()
