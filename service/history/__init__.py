"""Per-job history of changes, and the streams that follow it."""
