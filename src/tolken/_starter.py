"""The starter ``tolken.yaml`` written by ``tolken init``."""

STARTER_CONFIG = """\
# tolken configuration. Secrets come from the environment: ${VAR}.
store: sqlite:///tolken.db
tenant: default
poweroffice:
  base_url: https://goapi.poweroffice.net/v2
  token_url: https://goapi.poweroffice.net/OAuth/Token
  application_key: ${POWEROFFICE_APPLICATION_KEY}
  client_key: ${POWEROFFICE_CLIENT_KEY}
  subscription_key: ${POWEROFFICE_SUBSCRIPTION_KEY}
pms:
  base_url: https://pms.example.com/api/v1
  api_key: ${PMS_API_KEY}
sync:
  interval_seconds: 60
  reconcile_every: 60        # cycles between full reconciles
  conflict_policy: newest-wins
serve:
  host: 127.0.0.1
  port: 8470
  token: ${TOLKEN_DASHBOARD_TOKEN}   # Bearer token (or ?token=) for all but /healthz
  public_url: http://127.0.0.1:8470  # where the PMS sends webhooks: {public_url}/webhooks/pms
# mapping: path/to/mapping.yaml   (the built-in default when absent)
"""
