"""HR-driven provisioning for Microsoft Entra ID through API-driven inbound provisioning."""
