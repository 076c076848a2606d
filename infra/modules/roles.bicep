// Azure RBAC for the Function App's user-assigned identity: only what the app uses.
// Allowed roles (tests/test_infra.py checks that no other role is assigned):
//   Storage Blob Data Owner         b7e6dc6d-f1e8-4753-8033-0f276bb0955b  host (AzureWebJobsStorage),
//                                   deployment package, hr-inbound/results/state (blob trigger receipts)
//   Storage Queue Data Contributor  974c5e8b-45b9-4653-ba55-5f855dd0fb88  provisioning-flush queue,
//                                   blob trigger poison queue
//   Storage Table Data Contributor  0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3  AzureWebJobsStorage__tableServiceUri:
//                                   the Functions host writes its diagnostic events to Table storage
//                                   (AzureFunctionsDiagnosticEvents*); without it the host logs 403s
//   Monitoring Metrics Publisher    3913510d-42f4-4e42-8a64-420c390055eb  Entra-authenticated
//                                   Application Insights ingestion (DisableLocalAuth)

param principalId string
param storageAccountName string
param applicationInsightsName string

var storageRoles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
]
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource storageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in storageRoles: {
    name: guid(storage.id, principalId, role)
    scope: storage
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}
