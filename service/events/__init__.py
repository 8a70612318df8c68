"""Worker events: the conditional updates that move a job through its lifecycle."""
