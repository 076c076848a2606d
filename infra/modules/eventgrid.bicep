// Event Grid system topic on the storage account and a subscription delivering BlobCreated
// events of hr-inbound to the blob extension webhook of hr_file_dropped (the blob trigger uses
// source=EventGrid). The webhook key (systemKeys.blobs_extension) exists only once the app's
// code is deployed and the host has started, and Event Grid validates the endpoint when the
// subscription is created: main.bicep deploys this module only when createEventSubscription is
// true (azure.yaml's postdeploy hook sets it and provisions again after the first deploy).

param storageAccountName string
param functionAppName string
param location string
param tags object = {}
param systemTopicName string

var functionName = 'hr_file_dropped'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

// Host keys of the Function App (not storage keys): the system key of the blob extension.
resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: functionApp
  name: 'default'
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: systemTopicName
  location: location
  tags: tags
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = {
  parent: systemTopic
  name: 'hr-inbound-blob-created'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${functionHost.listKeys().systemKeys.blobs_extension}'
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/hr-inbound/'
      // Files the scheduled sweep set aside (moved to hr-inbound/failed/) are not dropped files.
      advancedFilters: [
        {
          operatorType: 'StringNotBeginsWith'
          key: 'subject'
          values: [
            '/blobServices/default/containers/hr-inbound/blobs/failed/'
          ]
        }
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output systemTopicName string = systemTopic.name
