"""Synctera External Accounts ingestion: the API client, a local sandbox, the pipeline's parts."""
