"""Azure Functions entry point: wires triggers to the provisioning stages, nothing more."""

import azure.functions as func

from provisioning.functions.blob_trigger import bp as blob_drop
from provisioning.functions.http_trigger import bp as http_changes
from provisioning.functions.reconcile_trigger import bp as reconciliation

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(blob_drop)
app.register_functions(http_changes)
app.register_functions(reconciliation)
