"""Ingestion tracker: tracks document-ingestion jobs of a knowledge-base backend."""
