"""End-to-end demo: the tracker, the reference backend and bundled documents.

Run it with ``python -m examples.demo`` or ``make demo``.
"""
