"""Examples of workers and backends that report to the ingestion tracker."""
