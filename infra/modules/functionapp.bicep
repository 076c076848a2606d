// Flex Consumption (FC1) Function App, Python 3.11, with a user-assigned identity for storage
// (host, HR connection, deployment package), Microsoft Graph and Application Insights.
// Every app setting below is read either by the Functions platform (AzureWebJobsStorage__*,
// APPLICATIONINSIGHTS_*, HRSTORAGE__credential) or by provisioning/settings.py; nothing else.

param name string
param planName string
param location string
param tags object = {}

param identityId string
param identityClientId string

param storageBlobEndpoint string
param storageQueueEndpoint string
param storageTableEndpoint string
param deploymentContainerName string

param applicationInsightsConnectionString string

@description('App settings read by provisioning/settings.py (PROVISIONING_*), name -> value.')
param provisioningSettings object

// Scale and concurrency: main.bicep's parameters, where the documented limits are cited.
@minValue(1)
@maxValue(1000)
@description('Highest number of on-demand instances of each per-function scale group.')
param maximumInstanceCount int

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance, MB.')
param instanceMemoryMB int

@minValue(1)
@description('Concurrent HTTP-triggered executions per instance (the HTTP scale group).')
param httpPerInstanceConcurrency int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

var platformSettings = {
  // Host storage, identity-based (Flex Consumption uses blobs and queues; the table endpoint
  // is for the host's diagnostic events, see roles.bicep).
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Application Insights with Entra authentication only (the component has DisableLocalAuth).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // Connection "HRSTORAGE" of the blob and queue triggers and of the app's own blob/queue
  // clients (provisioning/settings.py STORAGE_CONNECTION).
  HRSTORAGE__blobServiceUri: storageBlobEndpoint
  HRSTORAGE__queueServiceUri: storageQueueEndpoint
  HRSTORAGE__credential: 'managedidentity'
  HRSTORAGE__clientId: identityClientId
}

var appSettings = union(platformSettings, provisioningSettings)

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: string(setting.value)
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      // Per-function scaling: the HTTP functions scale as one group, the blob (Event Grid)
      // function as another, the queue flush and the timer each on their own. HTTP concurrency
      // is set here; the blob trigger's is host.json's extensions.blobs.maxDegreeOfParallelism.
      // No always-ready instances: every group scales to zero.
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource basicPublishingFtp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource basicPublishingScm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
