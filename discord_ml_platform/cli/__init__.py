"""The ``dmp`` command: clusters, jobs, GPU catalog, sandbox and pipeline runs from a terminal.

One module per command group; :mod:`discord_ml_platform.cli.main` only wires them together.
Nothing heavy (ray, kubernetes, dagster, torch) is imported until a command needs it, so
``dmp --help`` starts fast.
"""
