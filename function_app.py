"""Azure Functions entry point: wires triggers to the provisioning stages, nothing more."""

import azure.functions as func

from provisioning.blob_trigger import bp as blob_drop

app = func.FunctionApp()
app.register_functions(blob_drop)
