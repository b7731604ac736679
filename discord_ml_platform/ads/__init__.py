"""Ad Relevance reference workload: rank Quests (sponsored campaigns) for users.

Modules (heavy imports such as torch and ray stay inside the modules that need them, so importing
this package is cheap):

* ``schema``     ``FeatureSchema``: columns and embedding tables
* ``data``       synthetic Quests windows: generator, Parquet storage with ``_SUCCESS`` markers
* ``features``   pandas frames to model input tensors (torch)
* ``model``      ``RankerConfig`` and ``QuestRanker`` (embeddings + DLRM/DCN-v2 interaction)
* ``sharding``   table-wise / row-wise sharded embedding tables, all-to-all exchange, DDP dense part
* ``train``      the per-worker training loop, in process, under torchrun or Ray Train
* ``evaluate``   AUC, logloss, normalized entropy, calibration, ceiling AUC, per-segment AUC
* ``baseline``   the XGBoost baseline (target-encoded features), in process or XGBoostTrainer
* ``registry``   model versions with metrics and lineage, champion pointer, promotion gates
* ``infer``      ``QuestScorer`` and batch scoring in process or with Ray Data
* ``telemetry``  epoch metrics as Dagster Pipes messages on stdout
"""
