"""gunicorn entry point."""
from realtime import create_app

app = create_app()
