"""The seeds' blog on FastAPI, with live notifications from Belfry (see README.md)."""
