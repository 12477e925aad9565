"""Curation: the workspace ledger, import, fetch, attribute checks, dedup, model, export."""
