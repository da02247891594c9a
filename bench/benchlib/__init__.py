"""Harness for bench/run.py: registry and statistics (core), temporary studies (study),
machine description (machine), JSON and RESULTS.md (report)."""
