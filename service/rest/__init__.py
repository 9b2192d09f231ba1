"""The HTTP front: FastAPI routes (`/predict`, `/v2`, the repository extension, the page),
body reading, the front door, and the HTTP server's own limits."""
