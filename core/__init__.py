"""Plumbing shared by the API, the worker and the CLI: settings, database, logging, tenancy."""
