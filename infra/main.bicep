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
