"""What the tests, the benchmarks and grafana/preview.py share, imported as `tests.support.*`.

The repository root is the import root: pytest puts it first on sys.path (`pythonpath` in
pyproject.toml), and scripts run from it as modules (`python -m bench.soak`,
`python -m grafana.preview`), so nothing edits sys.path. Each module has one job: `paths`
(where the repository is), `clock` (a fake clock), `credentials` (test AppId, secret, logins),
`components` (real programs a test needs), `waiting` (polling for a condition with a deadline),
`tracking` (a tracker filled by hand), `processes` (the exporter as a subprocess, asked over
HTTP), `scrapes` (reading a scrape), `commands` (the command line as a user meets it), `load`
(many scrapers at once), `strategies` (hypothesis strategies), `certs` (a throwaway PKI),
`contract_metrics` (the contract's metric table), `standin` (an independent model of ZEGO's
API), `e2e_stack` (a real Prometheus and Alertmanager on loopback) and `lint_rules` (the
dashboard and alert linters). Nothing here is a test, and nothing in zego_exporter imports it.
"""
