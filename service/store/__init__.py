"""PostgreSQL access: tables, engine, migrations and the embedded server."""
