"""Ingestion jobs: registration, queries, retry and cancel."""
