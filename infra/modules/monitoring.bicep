// Log Analytics workspace and a workspace-based Application Insights component with local
// (instrumentation key) authentication disabled: telemetry is accepted only with an Entra token.

param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

@minValue(30)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output workspaceId string = workspace.id
output applicationInsightsId string = appInsights.id
output applicationInsightsName string = appInsights.name
// The connection string names the ingestion endpoint; with DisableLocalAuth its key alone
// cannot send telemetry (the app authenticates with APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
output connectionString string = appInsights.properties.ConnectionString
