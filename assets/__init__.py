"""Dagster assets: thin glue over ``pipelines`` (client → window planner → lake writer → DuckDB views)."""
