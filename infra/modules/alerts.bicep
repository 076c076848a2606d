// Log alerts on the Function App's telemetry (Application Insights, workspace-based).
// The queries match what the code logs:
//   provisioning/blob_trigger.py  raises RunInterrupted("run <id> interrupted: ...") -> exceptions
//   provisioning/drop.py          log.error("run %s stopped before sending: %s")     -> traces
//   provisioning/drop.py          "run <id> <status>: <counts>", at error for rejected, failed,
//                                 stopped, interrupted; at warning for partly-rejected
//   provisioning/submit.py        log.error("bulkUpload failed after %d attempts ...")
//   provisioning/changes.py       log.error("flush %s interrupted: %s")
//   provisioning/outcomes.py      "the provisioning job is in quarantine (...)"
//   provisioning/health.py        log.error("provisioning job unhealthy: %s")  (timer, every pass)

param applicationInsightsId string
param location string
param tags object = {}
param namePrefix string

@description('Resource id of an action group notified by the alerts; empty for none (alerts still fire in the portal).')
param actionGroupId string = ''

var actionGroups = empty(actionGroupId) ? [] : [actionGroupId]

var failedRunsQuery = '''
union
  (traces
    | where severityLevel >= 3
    | where message matches regex @"^(run|flush) \S+ (interrupted|stopped|failed|rejected)"
        or message startswith "bulkUpload failed"),
  (exceptions
    | where operation_Name == "hr_file_dropped" or outerMessage has " interrupted: ")
| project timestamp, itemType, message = coalesce(message, outerMessage), operation_Name
'''

var rejectedRecordsQuery = '''
traces
| where severityLevel == 2
| where message matches regex @"^run \S+ partly-rejected: "
| project timestamp, message, operation_Name
'''

var quarantineQuery = '''
traces
| where message has "quarantine" or message startswith "provisioning job unhealthy"
| project timestamp, message, operation_Name
'''

resource failedRuns 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${namePrefix}-failed-runs'
  location: location
  tags: tags
  properties: {
    displayName: 'HR provisioning: run failed, rejected or interrupted'
    description: 'A provisioning run or HTTP flush was interrupted, stopped, failed or rejected (nothing got in), or hr_file_dropped threw.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: failedRunsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource rejectedRecords 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${namePrefix}-rejected-records'
  location: location
  tags: tags
  properties: {
    displayName: 'HR provisioning: rows or records rejected'
    description: 'A run ended partly-rejected: rows failed validation (rejected.csv) or Graph refused records (ledger.csv); the rest was provisioned.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: rejectedRecordsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource quarantine 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${namePrefix}-job-quarantine'
  location: location
  tags: tags
  properties: {
    displayName: 'HR provisioning: provisioning job quarantined or paused'
    description: 'The Entra provisioning job is in quarantine or paused (results/health.json says which); nothing is provisioned until it is fixed and restarted.'
    severity: 0
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: quarantineQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: actionGroups
    }
  }
}
