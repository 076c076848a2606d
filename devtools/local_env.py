"""The app settings that point the app at the local Azurite and Graph emulator."""

from __future__ import annotations

from typing import Any

# Other managed-identity flavours azure-identity would prefer over IDENTITY_ENDPOINT.
MSI_CONFLICTS = ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET")


def local_settings(azurite: Any, emulator: Any, **extra: str) -> dict[str, str]:
    """Only the settings that point at Azure (storage, Graph URL, service principal and job
    ids, the managed-identity endpoint), and ``extra``: every other setting of the
    environment applies locally as it would in Azure."""
    return {
        "HRSTORAGE": azurite.connection_string,
        "PROVISIONING_SERVICE_PRINCIPAL_ID": emulator.sp_id,
        "PROVISIONING_JOB_ID": emulator.job_id,
        "PROVISIONING_GRAPH_URL": emulator.graph_url,
        # The Functions host's managed-identity endpoint, served by the emulator, so the real
        # ManagedIdentityCredential gets its token there.
        "IDENTITY_ENDPOINT": emulator.identity_endpoint,
        "IDENTITY_HEADER": emulator.identity_header,
        **extra,
    }


# Quick retries for tests and benchmarks against the emulator's faults.
FAST_RETRIES = {
    "PROVISIONING_RETRY_BASE_SECONDS": "0.05",
    "PROVISIONING_RETRY_MAX_SECONDS": "2",
    "PROVISIONING_REQUEST_TIMEOUT_SECONDS": "5",
}
