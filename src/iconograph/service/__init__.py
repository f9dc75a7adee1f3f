"""The HTTP service (FastAPI) and its review page: ``iconograph serve``.

>>> from iconograph.service import ServiceConfig, create_app
>>> app = create_app(ServiceConfig(token="...", store="store/", model="./my-clip"))
"""

from iconograph.service.app import ServiceConfig, create_app
from iconograph.service.auth import load_or_create_token

__all__ = ["ServiceConfig", "create_app", "load_or_create_token"]
