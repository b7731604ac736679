"""X-Ray: a web dashboard and JSON API over every Ray cluster the platform's backends know.

``create_app(settings, backends)`` in :mod:`discord_ml_platform.xray.app` builds the FastAPI app;
``dmp xray`` serves it. Nothing heavy is imported here.
"""
