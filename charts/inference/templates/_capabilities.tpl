{{/*
Optional integrations need APIs that a bare cluster does not serve. Each renders only when the
cluster serves its API, so that `helm install` with any values never sends an object the API
server would reject, nor an HPA metric nothing answers. `.Capabilities.APIVersions` is the
cluster's discovery on `helm install` / `helm upgrade`, and only the built-in APIs plus the
`--api-versions` flags on `helm template` (and `helm install --dry-run=client`, which takes no
such flag). Custom resources are checked as group/version/kind: a cluster may carry some of
prometheus-operator's CRDs (ServiceMonitor) without others (PrometheusRule). NOTES.txt names what
was left out, what to install and the flag that renders it offline.
*/}}

{{/* The API each optional integration needs; NOTES.txt prints the same strings. */}}
{{- define "inference.api.serviceMonitor" -}}monitoring.coreos.com/v1/ServiceMonitor{{- end }}
{{- define "inference.api.prometheusRule" -}}monitoring.coreos.com/v1/PrometheusRule{{- end }}
{{- define "inference.api.keda" -}}keda.sh/v1alpha1/ScaledObject{{- end }}
{{- define "inference.api.customMetrics" -}}custom.metrics.k8s.io/v1beta1{{- end }}
{{- define "inference.api.httpRoute" -}}gateway.networking.k8s.io/v1/HTTPRoute{{- end }}

{{/* "true" when the ServiceMonitor renders: asked for and served. */}}
{{- define "inference.serviceMonitor.enabled" -}}
{{- if and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has (include "inference.api.serviceMonitor" .)) }}true{{ end }}
{{- end }}

{{/* "true" when the PrometheusRule renders: asked for and served. */}}
{{- define "inference.prometheusRule.enabled" -}}
{{- if and .Values.prometheusRule.enabled (.Capabilities.APIVersions.Has (include "inference.api.prometheusRule" .)) }}true{{ end }}
{{- end }}

{{/* "true" when the Gateway API canary (Deployment, Service, HTTPRoute) renders: asked for and served. */}}
{{- define "inference.gatewayAPI.enabled" -}}
{{- if and .Values.canary.gatewayAPI.enabled (.Capabilities.APIVersions.Has (include "inference.api.httpRoute" .)) }}true{{ end }}
{{- end }}

{{/* "true" when the KEDA ScaledObject renders: asked for and served. Otherwise the HPA scales. */}}
{{- define "inference.keda.enabled" -}}
{{- if and .Values.keda.enabled (.Capabilities.APIVersions.Has (include "inference.api.keda" .)) }}true{{ end }}
{{- end }}

{{/* "true" when the chart's HPA renders: autoscaling on, and no ScaledObject (whose HPA KEDA owns). */}}
{{- define "inference.hpa.enabled" -}}
{{- if and .Values.autoscaling.enabled (not (include "inference.keda.enabled" .)) }}true{{ end }}
{{- end }}

{{/* "true" when the cluster serves per-pod custom metrics (prometheus-adapter serves v1beta1 and v1beta2). */}}
{{- define "inference.customMetrics.served" -}}
{{- if or (.Capabilities.APIVersions.Has "custom.metrics.k8s.io/v1beta2") (.Capabilities.APIVersions.Has "custom.metrics.k8s.io/v1beta1") }}true{{ end }}
{{- end }}

{{/* "true" when the HPA scales on the custom per-pod metric: `true` always, `auto` when served, `false` never. */}}
{{- define "inference.customMetric.enabled" -}}
{{- $mode := .Values.autoscaling.customMetric.enabled }}
{{- if kindIs "bool" $mode }}
{{- if $mode }}true{{ end }}
{{- else if include "inference.customMetrics.served" . }}true{{ end }}
{{- end }}

{{/*
NOTES.txt lines for the integrations that were asked for (or, for the custom metric, left on
`auto`) but not rendered because the cluster does not serve their API; empty when none.
*/}}
{{- define "inference.notes.missingApis" -}}
{{- $lines := list }}
{{- if and .Values.serviceMonitor.enabled (not (include "inference.serviceMonitor.enabled" .)) }}
{{- $lines = append $lines (list "ServiceMonitor (serviceMonitor.enabled)" (include "inference.api.serviceMonitor" .) "prometheus-operator (e.g. kube-prometheus-stack)" "nothing asks Prometheus to scrape /metrics") }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not (include "inference.prometheusRule.enabled" .)) }}
{{- $lines = append $lines (list "PrometheusRule (prometheusRule.enabled)" (include "inference.api.prometheusRule" .) "prometheus-operator (e.g. kube-prometheus-stack)" "its alerts are not loaded (files/alerts/ has them as plain rule files)") }}
{{- end }}
{{- if and .Values.keda.enabled (not (include "inference.keda.enabled" .)) }}
{{- $instead := ternary "the HPA scales the Deployment instead (autoscaling.*)" (printf "the Deployment keeps replicaCount (%v) replicas" .Values.replicaCount) .Values.autoscaling.enabled }}
{{- $lines = append $lines (list "KEDA ScaledObject (keda.enabled)" (include "inference.api.keda" .) "KEDA (https://keda.sh)" $instead) }}
{{- end }}
{{- if and .Values.canary.gatewayAPI.enabled (not (include "inference.gatewayAPI.enabled" .)) }}
{{- $lines = append $lines (list "Gateway API canary (canary.gatewayAPI.enabled: Deployment, Service and HTTPRoute)" (include "inference.api.httpRoute" .) "a Gateway API implementation with its CRDs (e.g. Envoy Gateway, Istio, NGINX Gateway Fabric)" "all traffic stays on the stable Deployment; canary.mode splits inside the pods without it") }}
{{- end }}
{{- if and (include "inference.hpa.enabled" .) (eq (toString .Values.autoscaling.customMetric.enabled) "auto") (not (include "inference.customMetrics.served" .)) }}
{{- $lines = append $lines (list (printf "HPA metric %s (autoscaling.customMetric.enabled: auto)" .Values.autoscaling.customMetric.name) (include "inference.api.customMetrics" .) "prometheus-adapter with k8s/prometheus-adapter/values.yaml" "the HPA scales on CPU only") }}
{{- end }}
{{- if $lines -}}
Not created, because the cluster does not serve the API they need:
{{- range $lines }}
  - {{ index . 0 }}: needs {{ index . 1 }}; {{ index . 3 }}.
    Install {{ index . 2 }}, then `helm upgrade`; `helm template` renders it with --api-versions {{ index . 1 }}
{{- end }}
{{- end }}
{{- end }}
