"""A loopback emulator of the Microsoft Graph endpoints used by API-driven inbound provisioning
(bulkUpload, provisioning logs, synchronization job, users) plus the App Service managed
identity token endpoint. A development and test tool: it is not deployed."""

from .scim import BULK_REQUEST_SCHEMA, CORE_USER, ENTERPRISE_USER, MAX_OPERATIONS
from .server import BUCKET_FULL_CODE, BUCKET_FULL_MESSAGE, GraphEmulator

__all__ = [
    "BUCKET_FULL_CODE",
    "BUCKET_FULL_MESSAGE",
    "BULK_REQUEST_SCHEMA",
    "CORE_USER",
    "ENTERPRISE_USER",
    "MAX_OPERATIONS",
    "GraphEmulator",
]
