"""Attribute consistency: `ifa curate check-attributes`.

`rules.py` holds the rule kinds and loads `taxonomy/rules.toml` (plus a user's file);
`check.py` runs them over the ledger's label arrays and applies or reports the actions.
"""
