"""Everything that talks to Label Studio: the embedded server, accounts, review rounds,
sync, agreement, tie-break and finalize. Start with `rounds.py` (creating a round),
`projects.py` (a round's projects and tasks), `files.py` (what Label Studio may serve) and
`sync.py` (annotations into the ledger)."""

# Environment variables naming an existing Label Studio; here, not in client.py, so the CLI
# can show them in --help without loading the Label Studio SDK (0.9 s).
ENV_URL = "IFA_LS_URL"
ENV_TOKEN = "IFA_LS_TOKEN"
