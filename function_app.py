"""Azure Functions entry point: wires triggers to the provisioning stages, nothing more.

The blob drop, Logic Apps and reconciliation triggers register their blueprints here as they
are built; the conversion they share lives in ``provisioning/``.
"""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
