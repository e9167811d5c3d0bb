"""Ingestion: profiles (traits, identities, merges), consents, lists, events and their outbox.

Shared by the tracking endpoints, the REST API, CSV import and (later) channels and flows, so
each rule (validation, consent history, deduplication) is written once.
"""
