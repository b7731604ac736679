"""Ray job drivers of the Ad Relevance assets; each speaks Dagster Pipes.

Run on the cluster as ``python -m discord_ml_platform.ads.entrypoints.<step>``; parameters
arrive as Pipes extras, results leave as a reported materialization.
"""
