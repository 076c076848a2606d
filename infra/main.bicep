// HR -> Microsoft Entra ID provisioning: the Azure resources of the Function App (azd up).
// See infra/README.md. Resource-group scoped: azd asks for (or creates) the resource group.
//
// Every PROVISIONING_* app setting set here is a field of provisioning/settings.py (checked by
// tests/test_infra.py); settings left out keep their documented defaults (README, Settings).

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags the resources.')
param environmentName string

@description('Azure region of the resources (Flex Consumption must be available there).')
param location string = resourceGroup().location

// --- Microsoft Graph / API-driven provisioning ---
@description('Object id of the API-driven provisioning app\'s service principal (PROVISIONING_SERVICE_PRINCIPAL_ID).')
param provisioningServicePrincipalId string

@description('Provisioning job id, API2AAD.<...> or API2AD.<...> (PROVISIONING_JOB_ID).')
param provisioningJobId string

@description('Grant the identity its Microsoft Graph app roles with the Microsoft Graph Bicep extension (needs Privileged Role Administrator). False: run infra/scripts/grant-graph-roles.sh instead.')
param grantGraphAppRoles bool = false

// --- pacing of bulkUpload ---
@minValue(1)
@description('bulkUpload requests per window (PROVISIONING_RATE_LIMIT_REQUESTS).')
param rateLimitRequests int = 40

@description('The pacing window in seconds, a number such as "5" or "2.5" (PROVISIONING_RATE_LIMIT_WINDOW_SECONDS).')
param rateLimitWindowSeconds string = '5'

// --- accidental-leaver guard ---
@description('Percent of a feed\'s active workers, a number such as "5" (PROVISIONING_LEAVER_THRESHOLD_PERCENT).')
param leaverThresholdPercent string = '5'

@minValue(0)
@description('Count of leavers; the higher of count and percent applies (PROVISIONING_LEAVER_THRESHOLD_COUNT).')
param leaverThresholdCount int = 50

// --- conversion ---
@description('Feed modes by feed, e.g. "employees=full,contractors=delta" (PROVISIONING_FEED_MODES).')
param feedModes string = ''

@description('IANA time zone of HR dates, e.g. "Europe/Paris" (PROVISIONING_HR_TIMEZONE).')
param hrTimezone string = 'UTC'

@description('Built-in mapping name or path of a mapping file in the package (PROVISIONING_MAPPING).')
param mapping string = 'microsoft-sample'

// --- HTTP changes ---
@description('Comma-separated client ids allowed to call the HTTP API (PROVISIONING_ALLOWED_CLIENT_IDS), typically the Logic App managed identity\'s client id. When set, a call that Easy Auth did not identify is refused (401), so deploy Easy Auth with it (easyAuthClientId). With easyAuthClientId, also Easy Auth\'s allowed client applications.')
param allowedClientIds string = ''

@description('Client id of the Entra app registration standing for the HTTP API (its token audience, api://<client id>). Set: Easy Auth (App Service authentication) with Microsoft Entra ID in front of the Function App. Empty: no Easy Auth; the function key alone protects the API.')
param easyAuthClientId string = ''

// --- reconciliation timer ---
@description('NCRONTAB schedule of the reconciliation timer, six fields with seconds first (PROVISIONING_RECONCILE_SCHEDULE). The timer binding reads this setting, so it must exist.')
param reconcileSchedule string = '0 */10 * * * *'

@minValue(1)
@description('bulkUpload calls the tenant allows per 24 hours: 2000 with Entra ID P1/P2, 6000 with Entra ID Governance (PROVISIONING_DAILY_CALL_QUOTA).')
param dailyCallQuota int = 2000

@description('Hours between drift reports, a number such as "24"; "0" turns them off (PROVISIONING_DRIFT_INTERVAL_HOURS).')
param driftIntervalHours string = '24'

@description('Re-send the HR record of workers whose Entra account drifted from it (PROVISIONING_DRIFT_AUTO_FIX).')
param driftAutoFix bool = false

// --- storage ---
@minValue(0)
@description('Delete blobs in the results container after this many days; 0 keeps them.')
param resultsRetentionDays int = 0

// --- Event Grid ---
@description('Create the Event Grid subscription to the blob trigger. Needs the code deployed (its webhook key); azure.yaml\'s postdeploy hook sets it and provisions again.')
param createEventSubscription bool = false

// --- alerts ---
@description('Resource id of an action group the alerts notify; empty for none.')
param alertActionGroupId string = ''

// --- scale (Flex Consumption) ---
// Graph pacing, the daily call quota and the bucket-full pause are kept in storage and shared
// by every sender in every instance (README, "Graph submission"), so the instance count is not
// needed for correctness: it bounds cost and how many instances share the one pace.
//
// Limits as Microsoft documents them (Learn, read 2026-12):
// - maximumInstanceCount, "Limit scale-out": "Currently the lowest maximum instance count value
//   is 1, and the highest supported maximum instance count value is 1000"; it applies to the
//   on-demand instances of each per-function scale group, not to the app's instances combined.
//   https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out
//   Earlier revisions of that page, the plan page ("Considerations": "The lowest maximum scale
//   is currently 40") and the AWS Lambda migration guide give 40 as the lowest:
//   https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
//   https://learn.microsoft.com/azure/azure-functions/migration/migrate-aws-lambda-to-azure-functions
//   The default, 40, is within both; go lower only where the platform accepts it.
// - instanceMemoryMB: 512, 2048 (the platform's default) or 4096, "Instance sizes":
//   https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-sizes
// - HTTP concurrency, functionAppConfig.scaleAndConcurrency.triggers.http.perInstanceConcurrency:
//   unset, Python apps get 1 at every instance size ("HTTP trigger concurrency"):
//   https://learn.microsoft.com/azure/azure-functions/functions-concurrency#http-trigger-concurrency
//   triggers has no setting for the other trigger types: the blob trigger's concurrency is
//   host.json's extensions.blobs.maxDegreeOfParallelism (1); the queue flush runs one at a time
//   under a lease on its lock blob, and the timer runs one pass at a time.
@minValue(1)
@maxValue(1000)
@description('Highest number of on-demand instances of each per-function scale group (HTTP functions, blob function, queue flush, timer). Pacing is shared in storage, so this bounds cost, not the Graph rate. Some Learn pages give 40 as the lowest value the platform accepts.')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance, MB (Flex Consumption sizes: 512, 2048, 4096).')
param instanceMemoryMB int = 2048

@minValue(1)
@description('Concurrent executions of the HTTP functions per instance (their scale group). They store a change and queue a flush; they never call Graph.')
param httpPerInstanceConcurrency int = 4

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-hrprov-${token}'
// allowedClientIds as a list, for Easy Auth (the app setting keeps the comma-separated text).
var allowedClientIdList = filter(map(split(allowedClientIds, ','), id => trim(id)), id => !empty(id))
var deploymentContainerName = 'deployment-package'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-hrprov-${token}'
  location: location
  tags: tags
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'sthrprov${take(token, 16)}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    resultsRetentionDays: resultsRetentionDays
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-hrprov-${token}'
    applicationInsightsName: 'appi-hrprov-${token}'
    location: location
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: identity.properties.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: functionAppName
    planName: 'plan-hrprov-${token}'
    location: location
    tags: tags
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    provisioningSettings: {
      PROVISIONING_SERVICE_PRINCIPAL_ID: provisioningServicePrincipalId
      PROVISIONING_JOB_ID: provisioningJobId
      PROVISIONING_CREDENTIAL: 'managedidentity'
      PROVISIONING_MANAGED_IDENTITY_CLIENT_ID: identity.properties.clientId
      PROVISIONING_RATE_LIMIT_REQUESTS: string(rateLimitRequests)
      PROVISIONING_RATE_LIMIT_WINDOW_SECONDS: rateLimitWindowSeconds
      PROVISIONING_LEAVER_THRESHOLD_PERCENT: leaverThresholdPercent
      PROVISIONING_LEAVER_THRESHOLD_COUNT: string(leaverThresholdCount)
      PROVISIONING_FEED_MODES: feedModes
      PROVISIONING_HR_TIMEZONE: hrTimezone
      PROVISIONING_MAPPING: mapping
      PROVISIONING_ALLOWED_CLIENT_IDS: allowedClientIds
      PROVISIONING_RECONCILE_SCHEDULE: reconcileSchedule
      PROVISIONING_DAILY_CALL_QUOTA: string(dailyCallQuota)
      PROVISIONING_DRIFT_INTERVAL_HOURS: driftIntervalHours
      PROVISIONING_DRIFT_AUTO_FIX: string(driftAutoFix)
    }
  }
  // The host must reach its storage and telemetry with the identity as soon as it starts.
  dependsOn: [
    roles
  ]
}

// After the site exists: authsettingsV2 is a child of it.
module easyAuth 'modules/easyauth.bicep' = if (!empty(easyAuthClientId)) {
  name: 'easyauth'
  params: {
    functionAppName: functionApp.outputs.name
    apiClientId: easyAuthClientId
    allowedClientIds: allowedClientIdList
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    location: location
    tags: tags
    namePrefix: 'hrprov-${token}'
    actionGroupId: alertActionGroupId
  }
}

module eventGrid 'modules/eventgrid.bicep' = if (createEventSubscription) {
  name: 'eventgrid'
  params: {
    storageAccountName: storage.outputs.name
    functionAppName: functionApp.outputs.name
    location: location
    tags: tags
    systemTopicName: 'evgt-hrprov-${token}'
  }
}

module graphRoles 'modules/graph-roles.bicep' = if (grantGraphAppRoles) {
  name: 'graph-roles'
  params: {
    principalId: identity.properties.principalId
  }
}

output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output EVENT_SUBSCRIPTION_CREATED bool = createEventSubscription
output EASY_AUTH_ENABLED bool = !empty(easyAuthClientId)
