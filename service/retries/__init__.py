"""The transactional outbox and the dispatcher that sends it to the backend."""
