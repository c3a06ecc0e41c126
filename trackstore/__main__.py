"""``python -m trackstore`` runs the command line."""

from .cli import app

app()
