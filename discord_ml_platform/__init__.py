"""discord_ml_platform: train, evaluate and batch-score models on per-run Ray clusters.

The package is usable without Dagster. Layers (imports go downward only):

* ``spec``      pure cluster specification, GPU catalog, policy, manifest rendering (no I/O)
* ``backends``  where clusters live: ``local`` Ray processes or ``kuberay`` on Kubernetes
* ``jobs``      Ray Jobs API helpers: submit, tail logs, stop, sample resource use
* ``ads``       the Ad Relevance reference workload
"""

__version__ = "0.1.0"
