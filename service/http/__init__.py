"""HTTP plumbing shared by every endpoint: request logging and OpenAPI."""
