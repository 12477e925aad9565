"""`ifa browse`: the whole dataset in a browser.

A local web app over one workspace: a grid of thumbnails of any slice (split, status and
rule, labels, label source, flags, dedup clusters, review rounds and decisions, file
problems) with facet counts, an image page, and actions that change the ledger through
the same calls as the CLI (each one event, undone by `ifa curate restore`).

- `filters.py`  query parameters -> a ledger slice (ledger/browse.py holds the SQL)
- `facets.py`   facet counts of any slice, in memory; which filter a page walks
- `actions.py`  set aside, restore, add and drop labels, send a slice to a review round
- `thumbs.py`   thumbnails, made on first view and cached under the workspace
- `app.py`      the routes: pages, the JSON API, files
- `server.py`   the HTTP server: loopback, the access token, Ctrl-C
"""
