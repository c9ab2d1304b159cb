{{/*
Checks across values that a JSON schema cannot express. Included by the Deployment so that an
invalid combination fails `helm install` / `helm template` with a clear message.
*/}}
{{- define "inference.validate" -}}
{{- $pause := float64 .Values.preStopSleepSeconds }}
{{- $drain := float64 .Values.server.drainSeconds }}
{{- if le (float64 .Values.terminationGracePeriodSeconds) (addf $pause $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds (%v) + server.drainSeconds (%v)" .Values.terminationGracePeriodSeconds .Values.preStopSleepSeconds .Values.server.drainSeconds) }}
{{- end }}
{{- if and .Values.model.mlflow.uri (toString (default "" .Values.model.version)) }}
{{- fail "set model.version or model.mlflow.uri, not both: the uri already names the model" }}
{{- end }}
{{- if and (include "inference.hpa.enabled" .) (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) }}
{{- fail "keda.minReplicaCount must not exceed keda.maxReplicaCount" }}
{{- end }}
{{- if and (include "inference.drift.sharedLog" .) (gt (int .Values.drift.minRecords) (int .Values.drift.window)) }}
{{- fail (printf "drift.minRecords (%v) must not exceed drift.window (%v): the window would never be judged" .Values.drift.minRecords .Values.drift.window) }}
{{- end }}
{{- if and (include "inference.hpa.enabled" .) (not (include "inference.customMetric.enabled" .)) (kindIs "invalid" .Values.autoscaling.targetCPUUtilizationPercentage) }}
{{- fail (printf "autoscaling needs a metric: set autoscaling.targetCPUUtilizationPercentage, or autoscaling.customMetric.enabled to true (it is %v; auto needs %s served)" .Values.autoscaling.customMetric.enabled (include "inference.api.customMetrics" .)) }}
{{- end }}
{{- if and (ne (toString .Values.canary.mode) "off") (not .Values.staging.enabled) }}
{{- fail (printf "canary.mode %s needs staging.enabled: the candidate is the staging model" .Values.canary.mode) }}
{{- end }}
{{- if and .Values.canary.gatewayAPI.enabled (ne (toString .Values.canary.mode) "off") }}
{{- fail "canary.gatewayAPI.enabled splits traffic between two Deployments; set canary.mode to off (or split inside the pods without the Gateway API)" }}
{{- end }}
{{- if and .Values.canary.gatewayAPI.enabled (not .Values.canary.gatewayAPI.parentRefs) }}
{{- fail "canary.gatewayAPI.parentRefs must name the Gateway the HTTPRoute attaches to" }}
{{- end }}
{{- end }}
