// Microsoft Graph application permissions (app roles) for the managed identity, through the
// Microsoft Graph Bicep extension (bicepconfig.json). The deploying user needs Privileged Role
// Administrator (or Application Administrator / Cloud Application Administrator with
// AppRoleAssignment.ReadWrite.All). Fallback without the extension: infra/scripts/grant-graph-roles.sh.

extension microsoftGraphV1

@description('Object (principal) id of the managed identity receiving the app roles.')
param principalId string

// Used by the app: SynchronizationData-User.Upload (bulkUpload), Synchronization.Read.All (job
// status); by the reconciliation: AuditLog.Read.All (provisioning logs), User.Read.All.
var graphAppRoles = [
  'SynchronizationData-User.Upload'
  'AuditLog.Read.All'
  'Synchronization.Read.All'
  'User.Read.All'
]

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource assignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in graphAppRoles: {
    principalId: principalId
    resourceId: graph.id
    appRoleId: filter(graph.appRoles, r => r.value == role)[0].id
  }
]

output assignedRoles array = graphAppRoles
