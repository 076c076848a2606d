// App Service Authentication (Easy Auth) in front of the Function App, with Microsoft Entra ID:
// only a valid token for the API's app registration, issued to an allowed client application
// (the Logic App's managed identity, typically), reaches the HTTP functions; Easy Auth then
// passes the caller to them in X-MS-CLIENT-PRINCIPAL, which provisioning/auth.py checks against
// PROVISIONING_ALLOWED_CLIENT_IDS (set from the same client ids by main.bicep).
// The function key is still required on /api/changes: Easy Auth comes on top of it.
//
// Properties: https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2
// The header: https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities

param functionAppName string

@description('Client id of the Entra app registration that stands for the API (the token audience).')
param apiClientId string

@description('Accepted token audiences; default: the registration\'s Application ID URI api://<client id> (v1 tokens, what a managed identity asks for) and its client id (v2 tokens).')
param allowedAudiences array = [
  'api://${apiClientId}'
  apiClientId
]

@description('Client ids of the applications allowed to call (Easy Auth answers 403 to others).')
param allowedClientIds array

@description('Paths Easy Auth lets through without a token.')
param excludedPaths array = [
  // The OpenAPI document is anonymous (its function has auth level ANONYMOUS).
  '/api/openapi.json'
  // Event Grid delivers BlobCreated events here without an Entra token (it authenticates with
  // the blob extension's system key, see eventgrid.bicep); behind Easy Auth, delivery and the
  // subscription's validation handshake would get 401.
  '/runtime/webhooks/blobs'
]

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      // An API: no login page to redirect to.
      unauthenticatedClientAction: 'Return401'
      excludedPaths: excludedPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiClientId
          openIdIssuer: 'https://login.microsoftonline.com/${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: allowedAudiences
          defaultAuthorizationPolicy: {
            allowedApplications: allowedClientIds
          }
        }
      }
    }
    login: {
      // Callers send a bearer token on each call; nothing to keep between calls.
      tokenStore: {
        enabled: false
      }
    }
  }
}
