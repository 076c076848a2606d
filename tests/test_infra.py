"""The Bicep in ``infra/`` against the code it deploys: app settings vs ``Settings``, binding
connections, no secrets, least-privilege roles, Graph app roles, the Event Grid filter.

The Bicep cannot be compiled here (no Bicep CLI); every ``.bicep`` file is parsed with
pycep-parser instead. pycep 0.7 parses every construct used, including ``extension
microsoftGraphV1`` and lambdas, so no regex fallback is needed for the templates; a file it
cannot parse fails the tests. Only the checks over raw text (secret patterns, the fallback
shell script) use regular expressions. Note that pycep renders identifiers and string literals
alike as Python strings, so values are compared with that in mind.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from pycep import BicepParser

from provisioning.runs.sweep import FAILED_PREFIX
from provisioning.settings import (
    FLUSH_QUEUE,
    INBOUND_CONTAINER,
    RESULTS_CONTAINER,
    STATE_CONTAINER,
    Settings,
)
from tests.e2e import functions

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"

# Settings read by the Functions platform, not by provisioning/settings.py.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# Parts of an identity-based connection the template sets for each binding connection.
CONNECTION_PARTS = ("blobServiceUri", "queueServiceUri", "credential", "clientId")
SETTING_NAME = re.compile(
    r"^(PROVISIONING_\w+|HRSTORAGE\w*|AzureWebJobsStorage\w*|APPLICATIONINSIGHTS_\w+)$"
)

ALLOWED_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    # Used because AzureWebJobsStorage__tableServiceUri is set (host diagnostic events).
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
}
TABLE_ROLE = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
GRAPH_APP_ROLES = {
    "SynchronizationData-User.Upload",
    "AuditLog.Read.All",
    "Synchronization.Read.All",
    "User.Read.All",
}
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


# --- reading the templates ---


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def parsed(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], BicepParser().parse(file_path=path))


def all_parsed() -> dict[Path, dict[str, Any]]:
    return {path: parsed(path) for path in bicep_files()}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's declared body, looking through a ``for`` loop or an ``if`` condition."""
    config = resource["config"]
    while isinstance(config, dict) and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def resources(type_: str) -> list[tuple[Path, str, dict[str, Any]]]:
    found = []
    for path, doc in all_parsed().items():
        for name, resource in doc.get("resources", {}).items():
            if resource["type"].lower() == type_.lower():
                found.append((path, name, resource))
    return found


def variable(doc: dict[str, Any], name: str) -> Any:
    return doc.get("variables", {}).get(name, {}).get("value")


def loop_items(doc: dict[str, Any], resource: dict[str, Any]) -> list[Any]:
    """The array a looped resource iterates over, resolved when it is a variable."""
    loop = resource["config"].get("loop_type")
    assert loop, "not a loop"
    array = loop["detail"]["array_name"]
    resolved = variable(doc, array) if isinstance(array, str) else array
    assert isinstance(resolved, list), f"cannot resolve loop array {array!r}"
    return resolved


def template_settings() -> dict[str, Any]:
    """App setting names the template sets, with their (pycep) values: the Function App
    module's ``platformSettings`` and main.bicep's ``provisioningSettings`` module parameter,
    merged in the site's ``appSettings`` loop."""
    app = parsed(INFRA / "modules" / "functionapp.bicep")
    (_, _, site), *others = [r for r in resources("Microsoft.Web/sites") if not r[2]["existing"]]
    assert not others, "one Function App expected"
    loop = body(site)["properties"]["siteConfig"]["appSettings"]
    assert loop["loop_type"]["detail"]["array_name"]["function"]["parameters"] == {
        "arg_1": "appSettings"
    }
    assert json.dumps(variable(app, "appSettings")).count("Settings") == 2  # union of both
    platform = variable(app, "platformSettings")
    module = parsed(MAIN)["modules"]["functionApp"]
    assert module["detail"]["path"] == "modules/functionapp.bicep"
    provisioning = module["config"]["params"]["provisioningSettings"]
    assert not set(platform) & set(provisioning)
    found = {**platform, **provisioning}
    # Nothing else in any template looks like an app setting name.
    stray = {
        key
        for doc in all_parsed().values()
        for node in walk(doc)
        if isinstance(node, dict)
        for key in node
        if SETTING_NAME.match(key)
    } - set(found)
    assert not stray, stray
    return found


def settings_names() -> set[str]:
    """Environment names of every Settings field (validation aliases for the storage ones)."""
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"PROVISIONING_{field_name.upper()}")
        else:
            names.update(c for c in alias.choices if isinstance(c, str))  # type: ignore[union-attr]
    return names


def env_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    if alias is None:
        return f"PROVISIONING_{field_name.upper()}"
    return str(alias.choices[0])  # type: ignore[union-attr]


def binding_connections() -> set[str]:
    connections = set()
    for function in functions().values():
        for raw in function.get_raw_bindings():
            binding = json.loads(raw)
            if binding.get("connection"):
                connections.add(binding["connection"])
    return connections


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def parameter_settings() -> dict[str, str]:
    """main.bicep parameters named after a Settings field (``provisioningJobId`` -> job_id),
    with that field's environment name."""
    matched = {}
    for param in parsed(MAIN)["parameters"]:
        field_name = snake(param).removeprefix("provisioning_")
        if field_name in Settings.model_fields:
            matched[param] = env_name(field_name)
    return matched


# --- tests ---


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    assert parsed(path)["globals"]


def test_app_settings_are_read_by_the_code() -> None:
    names = set(template_settings())
    code = settings_names()
    # The Functions host reads <connection>__credential; settings.py needs only the others.
    host_connection = {f"{conn}__credential" for conn in binding_connections()}
    ours = {n for n in names if n.startswith(("PROVISIONING_", "HRSTORAGE"))}
    assert ours <= code | host_connection, ours - code - host_connection
    assert names - ours <= PLATFORM_SETTINGS, names - ours - PLATFORM_SETTINGS


def test_settings_that_matter_in_azure_are_set() -> None:
    names = set(template_settings())
    by_param = parameter_settings()
    assert {
        "provisioningServicePrincipalId",
        "provisioningJobId",
        "rateLimitRequests",
        "rateLimitWindowSeconds",
        "leaverThresholdPercent",
        "leaverThresholdCount",
        "feedModes",
        "hrTimezone",
        "mapping",
        "allowedClientIds",
        "reconcileSchedule",
        "dailyCallQuota",
        "driftIntervalHours",
        "driftAutoFix",
    } <= set(by_param)
    required = {
        env_name("service_principal_id"),
        env_name("job_id"),
        env_name("credential"),
        env_name("managed_identity_client_id"),
        env_name("storage_blob_service_uri"),
        env_name("storage_queue_service_uri"),
        env_name("storage_client_id"),
        *by_param.values(),
    }
    assert required <= names, required - names
    settings = template_settings()
    # Each parameter named after a setting actually feeds it.
    for param, name in by_param.items():
        assert param in json.dumps(settings[name]), (param, name)
    assert settings["PROVISIONING_CREDENTIAL"] == "managedidentity"
    assert settings["HRSTORAGE__credential"] == "managedidentity"
    # The timer binding reads its schedule from this setting (%...%): it must exist in Azure.
    assert "PROVISIONING_RECONCILE_SCHEDULE" in names
    assert by_param["reconcileSchedule"] == "PROVISIONING_RECONCILE_SCHEDULE"


def test_binding_connections_are_identity_based() -> None:
    names = set(template_settings())
    connections = binding_connections()
    assert connections == {"HRSTORAGE"}
    for conn in connections:
        wanted = {f"{conn}__{part}" for part in CONNECTION_PARTS}
        assert wanted <= names, wanted - names
        assert conn not in names  # a connection string


def test_no_secrets() -> None:
    names = set(template_settings())
    assert not names & {"AzureWebJobsStorage", "HRSTORAGE", "APPINSIGHTS_INSTRUMENTATIONKEY"}
    storage_symbols = {name for _, name, _ in resources("Microsoft.Storage/storageAccounts")} | {
        "storage"
    }
    for path in bicep_files():
        text = path.read_text()
        for forbidden in ("AccountKey=", "InstrumentationKey=", "listAccountSas", "listServiceSas"):
            assert forbidden not in text, (path, forbidden)
        # listKeys only as a method of a non-storage resource (the Function App's host keys).
        assert not re.search(r"(?<![.\w])listKeys\s*\(", text), path
        for receiver in re.findall(r"(\w+)\.listKeys\s*\(", text):
            resource = parsed(path)["resources"][receiver]
            assert not resource["type"].startswith("Microsoft.Storage/"), (path, receiver)
            assert receiver not in storage_symbols
        for node in walk(parsed(path)):
            if isinstance(node, dict):
                for key, value in node.items():
                    if "connectionstring" in key.lower() and isinstance(value, str):
                        assert "key=" not in value.lower(), (path, key)
    accounts = resources("Microsoft.Storage/storageAccounts")
    declared = [body(r) for _, _, r in accounts if not r["existing"]]
    assert declared
    for account in declared:
        props = account["properties"]
        assert props["allowSharedKeyAccess"] is False
        assert props["allowBlobPublicAccess"] is False
        assert props["minimumTlsVersion"] == "TLS1_2"
    for _, _, component in resources("Microsoft.Insights/components"):
        if not component["existing"]:
            assert body(component)["properties"]["DisableLocalAuth"] is True
    auth = template_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert auth == "ClientId=${identityClientId};Authorization=AAD"


def test_storage_holds_what_the_app_uses_privately() -> None:
    doc = parsed(INFRA / "modules" / "storage.bicep")
    assert set(variable(doc, "appContainers")) == {
        INBOUND_CONTAINER,
        RESULTS_CONTAINER,
        STATE_CONTAINER,
    }
    assert variable(doc, "flushQueue") == FLUSH_QUEUE
    (_, _, containers), *_ = resources("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert body(containers)["properties"]["publicAccess"] == "None"
    (_, _, policy), *_ = resources("Microsoft.Storage/storageAccounts/managementPolicies")
    rule = body(policy)["properties"]["policy"]["rules"][0]["definition"]
    assert rule["filters"]["prefixMatch"] == [f"{RESULTS_CONTAINER}/"]


def test_role_assignments_are_least_privilege() -> None:
    assignments = resources("Microsoft.Authorization/roleAssignments")
    assert assignments
    used = set()
    for path, name, resource in assignments:
        doc = parsed(path)
        config = body(resource)
        expression = json.dumps(config["properties"]["roleDefinitionId"])
        guids = set(GUID.findall(expression))
        # Resolve variables named in the expression, and the loop array of a looped assignment.
        for word in re.findall(r'"(\w+)"', expression):
            guids |= set(GUID.findall(json.dumps(variable(doc, word))))
        if resource["config"].get("loop_type"):
            guids |= {g for item in loop_items(doc, resource) for g in GUID.findall(str(item))}
        assert guids, (path, name)
        assert guids <= set(ALLOWED_ROLES), (path, name, guids - set(ALLOWED_ROLES))
        used |= guids
        # Scoped to a resource, never to the resource group or subscription.
        scope = config.get("scope")
        assert isinstance(scope, str) and scope in doc["resources"], (path, name, scope)
        assert doc["resources"][scope]["type"] in (
            "Microsoft.Storage/storageAccounts",
            "Microsoft.Insights/components",
        )
    assert used == set(ALLOWED_ROLES)
    if TABLE_ROLE in used:
        assert "AzureWebJobsStorage__tableServiceUri" in template_settings()


def test_graph_app_roles() -> None:
    path = INFRA / "modules" / "graph-roles.bicep"
    doc = parsed(path)
    assert "microsoftGraphV1" in doc["extensions"]
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )
    (_, _, graph), *others = resources("Microsoft.Graph/servicePrincipals")
    assert not others and graph["existing"] and graph["api_version"] == "v1.0"
    assert graph["config"]["appId"] == "00000003-0000-0000-c000-000000000000"
    (_, _, assignment), *others = resources("Microsoft.Graph/appRoleAssignedTo")
    assert not others and assignment["api_version"] == "v1.0"
    assert set(loop_items(doc, assignment)) == GRAPH_APP_ROLES
    assert len(loop_items(doc, assignment)) == len(GRAPH_APP_ROLES)
    # Behind a bool parameter of main.bicep.
    main = parsed(MAIN)
    module = next(m for m in main["modules"].values() if m["detail"]["path"].endswith(path.name))
    condition = module["config"]["condition"]
    assert isinstance(condition, str) and main["parameters"][condition]["type"] == "bool"
    # The documented fallback grants the same roles.
    script = (INFRA / "scripts" / "grant-graph-roles.sh").read_text()
    listed = re.search(r"^ROLES=\((.*)\)$", script, re.M)
    assert listed and set(listed.group(1).split()) == GRAPH_APP_ROLES


def test_event_grid_sends_blob_created_of_hr_inbound_to_the_blob_trigger() -> None:
    (_, _, topic), *_ = resources("Microsoft.EventGrid/systemTopics")
    assert body(topic)["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"
    subscriptions = resources("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    assert len(subscriptions) == 1
    path, _, subscription = subscriptions[0]
    props = body(subscription)["properties"]
    assert props["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert props["filter"]["subjectBeginsWith"] == (
        f"/blobServices/default/containers/{INBOUND_CONTAINER}/"
    )
    # Files the sweep set aside under failed/ do not trigger a run.
    assert props["filter"]["advancedFilters"] == [
        {
            "operatorType": "StringNotBeginsWith",
            "key": "subject",
            "values": [
                f"/blobServices/default/containers/{INBOUND_CONTAINER}/blobs/{FAILED_PREFIX}"
            ],
        }
    ]
    url = props["destination"]["properties"]["endpointUrl"]
    function_name = variable(parsed(path), "functionName")
    assert function_name in functions()
    assert json.loads(functions()[function_name].get_raw_bindings()[0])["source"] == "EventGrid"
    assert url.startswith(
        "https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?"
    )
    assert "functionName=Host.Functions.${functionName}" in url
    assert "&code=${functionHost.listKeys().systemKeys.blobs_extension}" in url


def test_no_arm_json_templates() -> None:
    allowed_json = {"bicepconfig.json", "main.parameters.json", "logicapp/workflow.json"}
    for path in INFRA.rglob("*"):
        if path.is_dir():
            continue
        relative = path.relative_to(INFRA).as_posix()
        if path.suffix == ".json":
            assert relative in allowed_json, relative
        else:
            assert path.suffix in (".bicep", ".md", ".sh"), relative
    parameters = json.loads((INFRA / "main.parameters.json").read_text())
    assert "deploymentParameters" in parameters["$schema"]
    declared = parsed(MAIN)["parameters"]
    assert set(parameters["parameters"]) <= set(declared)
    without_default = {name for name, p in declared.items() if "default" not in p}
    assert without_default <= set(parameters["parameters"])


def test_easy_auth_in_front_of_the_function_app() -> None:
    """Easy Auth (authsettingsV2) requires an Entra token from an allowed application on every
    path but the anonymous ones, and answers 401 rather than redirecting (an API)."""
    path = INFRA / "modules" / "easyauth.bicep"
    doc = parsed(path)
    (_, _, auth), *others = resources("Microsoft.Web/sites/config")
    assert not others
    config = body(auth)
    assert config["name"] == "authsettingsV2"
    site = doc["resources"][config["parent"]]
    assert site["type"] == "Microsoft.Web/sites" and site["existing"]
    assert site["config"]["name"] == "functionAppName"
    props = config["properties"]
    assert props["platform"]["enabled"] is True
    assert props["httpSettings"]["requireHttps"] is True
    assert props["login"]["tokenStore"]["enabled"] is False
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "apiClientId"
    assert aad["registration"]["openIdIssuer"] == (
        "https://login.microsoftonline.com/${tenant().tenantId}/v2.0"
    )
    # Values passed through parameters: their defaults, or main.bicep's arguments (below).
    params = doc["parameters"]
    assert aad["validation"]["allowedAudiences"] == "allowedAudiences"
    assert params["allowedAudiences"]["default"] == ["api://${apiClientId}", "apiClientId"]
    policy = aad["validation"]["defaultAuthorizationPolicy"]
    assert policy["allowedApplications"] == "allowedClientIds"
    assert params["allowedClientIds"]["type"] == "array"
    assert validation["excludedPaths"] == "excludedPaths"
    excluded = params["excludedPaths"]["default"]
    # Exactly the anonymous HTTP functions (under the host's default /api prefix) ...
    assert "routePrefix" not in json.dumps(json.loads((ROOT / "host.json").read_text()))
    routes = {}
    for function in functions().values():
        for raw in function.get_raw_bindings():
            binding = json.loads(raw)
            if binding["type"] == "httpTrigger":
                routes[f"/api/{binding['route']}"] = binding["authLevel"]
    anonymous = {route for route, level in routes.items() if level == "ANONYMOUS"}
    assert anonymous == {"/api/openapi.json"}
    # ... and the blob extension's webhook, which Event Grid calls without an Entra token.
    (_, _, subscription), *_ = resources("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    url = body(subscription)["properties"]["destination"]["properties"]["endpointUrl"]
    webhook = url.split("}", 1)[1].split("?", 1)[0]
    assert webhook == "/runtime/webhooks/blobs"
    assert sorted(excluded) == sorted(anonymous | {webhook})
    assert not set(excluded) & {r for r, level in routes.items() if level != "ANONYMOUS"}
    # The property reference is cited.
    text = path.read_text()
    assert (
        "https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2"
        in text
    )


def test_easy_auth_is_deployed_from_azd_parameters() -> None:
    """easyAuthClientId turns Easy Auth on; allowedClientIds feeds both Easy Auth's allowed
    applications and PROVISIONING_ALLOWED_CLIENT_IDS."""
    main = parsed(MAIN)
    params = main["parameters"]
    assert params["easyAuthClientId"]["type"] == "string"
    assert params["easyAuthClientId"]["default"] == ""
    assert params["allowedClientIds"]["default"] == ""
    module = main["modules"]["easyAuth"]
    assert module["detail"]["path"] == "modules/easyauth.bicep"
    condition = module["config"]["condition"]
    assert condition == {
        "operator": {
            "type": "not",
            "operands": {
                "bool_value": {
                    "function": {
                        "type": "empty",
                        "parameters": {"item_to_test": "easyAuthClientId"},
                    }
                }
            },
        }
    }
    args = module["config"]["config"]["params"]
    assert args["apiClientId"] == "easyAuthClientId"
    assert "functionApp" in json.dumps(args["functionAppName"])
    # The comma-separated parameter, split, trimmed and without empty entries.
    ids = variable(main, args["allowedClientIds"])
    expression = json.dumps(ids)
    assert ids["function"]["type"] == "filter"
    for part in ('"split"', '"input_string": "allowedClientIds"', '"delimiter": ","', '"trim"'):
        assert part in expression, part
    assert '"empty"' in json.dumps(ids["function"]["parameters"]["expression"])
    assert template_settings()["PROVISIONING_ALLOWED_CLIENT_IDS"] == "allowedClientIds"
    # Every parameter of the module is given or has a default.
    module_params = parsed(INFRA / "modules" / "easyauth.bicep")["parameters"]
    required = {name for name, p in module_params.items() if p.get("default") is None}
    assert required <= set(args), required - set(args)
    # azd environment values, like the other parameters.
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert mapped["easyAuthClientId"] == {"value": "${EASY_AUTH_CLIENT_ID=}"}
    assert mapped["allowedClientIds"] == {"value": "${PROVISIONING_ALLOWED_CLIENT_IDS=}"}


def test_the_alerts_see_the_runs_that_need_a_person() -> None:
    """The log-alert queries match the closing line drop.py logs for each status that needs a
    person, at its level (README, "Statuses and exit codes"), and not the others."""
    import logging
    import re

    from provisioning.status import log_level

    text = (INFRA / "modules" / "alerts.bicep").read_text(encoding="utf-8")
    queries = {
        level: [re.compile(p) for p in re.findall(r'matches regex @"([^"]+)"', block)]
        for level, block in (
            (logging.ERROR, text.split("var failedRunsQuery")[1].split("'''", 2)[1]),
            (logging.WARNING, text.split("var rejectedRecordsQuery")[1].split("'''", 2)[1]),
        )
    }
    for status in ("complete", "superseded", "held-for-approval", "partly-rejected", "rejected"):
        line = f"run 20261202T001500-0123abcd-9f8e7d {status}: rows_read=3, records_sent=2"
        level = log_level(status)
        seen = any(p.search(line) for p in queries.get(level, []))
        assert seen == (status in ("partly-rejected", "rejected")), status


# Flex Consumption scale and concurrency: main.bicep parameter -> (azd env value, default).
SCALE_PARAMETERS = {
    "maximumInstanceCount": ("MAXIMUM_INSTANCE_COUNT", 40),
    "instanceMemoryMB": ("INSTANCE_MEMORY_MB", 2048),
    "httpPerInstanceConcurrency": ("HTTP_PER_INSTANCE_CONCURRENCY", 4),
}


def decorators(param: dict[str, Any]) -> dict[str, Any]:
    return {d["type"]: d["argument"] for d in param.get("decorators", [])}


def test_scale_and_memory_are_parameters_of_main_bicep() -> None:
    """maximumInstanceCount, the instance memory and the HTTP concurrency are main.bicep
    parameters within Microsoft's documented limits (cited in a comment), passed through to
    the Function App module and mapped to azd environment values in main.parameters.json."""
    main = parsed(MAIN)
    params = main["parameters"]
    for name, (_, default) in SCALE_PARAMETERS.items():
        assert params[name]["type"] == "int", name
        assert params[name]["default"] == default, name
        assert decorators(params[name]).get("description"), name
    count = decorators(params["maximumInstanceCount"])
    assert (count["min_value"], count["max_value"]) == (1, 1000)
    # The default is within the lowest value every revision of the docs gives (40, then 1).
    assert 40 <= params["maximumInstanceCount"]["default"] <= 1000
    assert decorators(params["instanceMemoryMB"])["allowed"] == [512, 2048, 4096]
    assert decorators(params["httpPerInstanceConcurrency"])["min_value"] == 1
    text = MAIN.read_text()
    for page in (
        "https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out",
        "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations",
        "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-sizes",
        "https://learn.microsoft.com/azure/azure-functions/functions-concurrency#http-trigger-concurrency",
    ):
        assert page in text, page
    # Passed to the module, whose parameters have the same limits and no default of their own.
    args = main["modules"]["functionApp"]["config"]["params"]
    module_params = parsed(INFRA / "modules" / "functionapp.bicep")["parameters"]
    for name in SCALE_PARAMETERS:
        assert args[name] == name, name
        assert module_params[name].get("default") is None, name
        assert module_params[name]["type"] == "int", name
        limits = {k: v for k, v in decorators(module_params[name]).items() if k != "description"}
        assert limits == {k: v for k, v in decorators(params[name]).items() if k != "description"}
    # azd environment values, defaulting to the same values.
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for name, (env, default) in SCALE_PARAMETERS.items():
        assert mapped[name] == {"value": f"${{{env}={default}}}"}, name
    # The infra README's parameter table lists them with their defaults.
    readme = (INFRA / "README.md").read_text()
    for name, (env, default) in SCALE_PARAMETERS.items():
        assert f"| `{env}` | `{name}` | `{default}` |" in readme, name
    # The root README's scale-out advice follows: no longer "keep the app at one instance".
    root = (ROOT / "README.md").read_text()
    assert "keep the Function App at one instance" not in root
    assert "`maximumInstanceCount` (infra parameter, default 40, per scale group)" in root


def test_per_function_scaling_and_concurrency_are_set() -> None:
    """The site's functionAppConfig.scaleAndConcurrency takes the parameters, HTTP concurrency
    included; the blob trigger's concurrency stays host.json's (1); every function's trigger
    is one the template accounts for (no Durable Functions group, nothing always ready)."""
    (_, _, site), *_ = [r for r in resources("Microsoft.Web/sites") if not r[2]["existing"]]
    scale = body(site)["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale == {
        "maximumInstanceCount": "maximumInstanceCount",
        "instanceMemoryMB": "instanceMemoryMB",
        "triggers": {"http": {"perInstanceConcurrency": "httpPerInstanceConcurrency"}},
    }
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["blobs"]["maxDegreeOfParallelism"] == 1
    triggers = {}
    for name, function in functions().items():
        (trigger,) = [
            b for b in map(json.loads, function.get_raw_bindings()) if b["type"].endswith("Trigger")
        ]
        triggers[name] = trigger
    kinds = {t["type"] for t in triggers.values()}
    assert kinds == {"httpTrigger", "blobTrigger", "queueTrigger", "timerTrigger"}, kinds
    blob = [t for t in triggers.values() if t["type"] == "blobTrigger"]
    assert all(t["source"] == "EventGrid" for t in blob)  # the "blob" scale group
