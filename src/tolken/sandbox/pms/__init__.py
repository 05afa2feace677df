"""The reference PMS server: the REST contract of DESIGN §2 on FastAPI and SQLite.

``create_app(data_dir)`` builds the ASGI app; ``tolken sandbox`` serves it.
"""

from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms.app import create_app
from tolken.sandbox.pms.validation import merge_patch
from tolken.sandbox.pms.webhooks import sign

__all__ = ["PMS_API_KEY", "create_app", "merge_patch", "sign"]
