#!/usr/bin/env bash
# Grant the Function App's managed identity its Microsoft Graph application permissions
# (app roles), the fallback when main.bicep's grantGraphAppRoles is false or the Microsoft Graph
# Bicep extension cannot be used. Idempotent: roles already assigned are skipped.
#
# Run as a Privileged Role Administrator (or Application Administrator / Cloud Application
# Administrator), signed in with `az login`:
#   infra/scripts/grant-graph-roles.sh <managed identity principal (object) id>
# or, after `azd up`, without argument: the id is read from the azd environment
# (output MANAGED_IDENTITY_PRINCIPAL_ID).
set -euo pipefail

GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
# Keep in line with infra/modules/graph-roles.bicep.
ROLES=(SynchronizationData-User.Upload AuditLog.Read.All Synchronization.Read.All User.Read.All)

principal_id="${1:-}"
if [[ -z "$principal_id" ]]; then
  principal_id=$(azd env get-value MANAGED_IDENTITY_PRINCIPAL_ID)
fi
if [[ -z "$principal_id" ]]; then
  echo "usage: $0 <managed identity principal id>" >&2
  exit 2
fi

graph_sp=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv)
assigned=$(az rest -m GET \
  -u "https://graph.microsoft.com/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
  --query "value[?resourceId=='$graph_sp'].appRoleId" -o tsv)

for role in "${ROLES[@]}"; do
  role_id=$(az ad sp show --id "$GRAPH_APP_ID" \
    --query "appRoles[?value=='$role' && contains(allowedMemberTypes, 'Application')].id" -o tsv)
  if [[ -z "$role_id" ]]; then
    echo "Microsoft Graph has no application role $role" >&2
    exit 1
  fi
  if grep -qx "$role_id" <<<"$assigned"; then
    echo "$role: already assigned"
    continue
  fi
  az rest -m POST \
    -u "https://graph.microsoft.com/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
    --headers "Content-Type=application/json" \
    -b "{\"principalId\":\"$principal_id\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role_id\"}" \
    -o none
  echo "$role: assigned"
done
