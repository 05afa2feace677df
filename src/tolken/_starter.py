"""The starter ``tolken.yaml`` files ``tolken init`` writes (``--pms rest``: a described PMS)."""

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

STARTER_REST_CONFIG = """\
# tolken configuration for a PMS with a REST API of its own (pms.connector: rest).
# Every pms.rest option is explained in docs/pms-rest.md, with a worked example.
# Secrets come from the environment: ${VAR}. Then run:
#   tolken check-pms --config tolken.yaml    (until every rule passes or is ABSENT)
store: sqlite:///tolken.db
tenant: default
poweroffice:
  base_url: https://goapi.poweroffice.net/v2
  token_url: https://goapi.poweroffice.net/OAuth/Token
  application_key: ${POWEROFFICE_APPLICATION_KEY}
  client_key: ${POWEROFFICE_CLIENT_KEY}
  subscription_key: ${POWEROFFICE_SUBSCRIPTION_KEY}
pms:
  connector: rest
  base_url: https://pms.example.com/api      # the API root; paths below start here
  api_key: ${PMS_API_KEY}                    # the secret auth uses (leave out with auth type none)
  page_size: 100                             # records per list request
  rest:
    auth:
      type: bearer                           # bearer | api-key | basic | none (docs/pms-rest.md)
    resources:                               # the PMS's own collection paths
      customers:
        path: /customers
        # update: {method: PUT, path: "/customers/{id}"}   # replace any endpoint
        # delete: false                                     # the PMS cannot delete
      projects:
        path: /projects
    body:
      list_path: items                       # the record array in a list answer ("" = root array)
      record_path: ""                        # the record in a single-record answer
    identity:
      id_field: id                           # numbers become strings
      updated_at_field: updated_at           # modification time (ISO 8601 or unix); null if none
      # version_field: version               # optimistic concurrency (If-Match), or etag: true
    update_mode: merge-patch                 # merge-patch | patch | put (read, merge, write)
    paging:
      type: page                             # page | offset | cursor | link | none
      page_param: page
      size_param: limit
      first_page: 1
    changes:
      type: updated-since                    # updated-since | feed | none (full listing by hash)
      param: updated_after                   # or operator syntax, e.g. updated_at_gte
      format: iso                            # iso | unix | unix-ms | a strftime pattern
      inclusive: false                       # true when the filter includes that very time
    idempotency:                             # at least one: no duplicate after a crash
      # header: Idempotency-Key              # if the PMS honours one
      reference_field: external_ref          # a field tolken writes its key into and filters by
    errors:
      message_path: error.message            # the human message in an error body
sync:
  interval_seconds: 60
  reconcile_every: 60        # cycles between full reconciles
  conflict_policy: newest-wins
# mapping: mapping.yaml    # map PowerOffice fields onto your PMS's field names (docs/pms-rest.md)
"""
