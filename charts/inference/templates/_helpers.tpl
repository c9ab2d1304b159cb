{{/* Chart name, overridable. */}}
{{- define "inference.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources (63 characters at most, the DNS label limit). A release
whose name already contains the chart name is not repeated.
*/}}
{{- define "inference.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the drift monitor's resources. */}}
{{- define "inference.drift.fullname" -}}
{{- printf "%s-drift" (include "inference.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "inference.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. The chart version appears here, never in selectors. */}}
{{- define "inference.labels" -}}
helm.sh/chart: {{ include "inference.chart" . }}
{{ include "inference.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slipway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the inference pods: stable across upgrades. */}}
{{- define "inference.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inference.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* The Gateway API canary: its Deployment and Service, and its pods' labels. */}}
{{- define "inference.canary.fullname" -}}
{{- printf "%s-canary" (include "inference.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "inference.canary.labels" -}}
helm.sh/chart: {{ include "inference.chart" . }}
{{ include "inference.canary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slipway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "inference.canary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inference.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: canary
{{- end }}

{{/*
Env of the canary pods over the ConfigMap's: the candidate as the staging model answering every
default-route request (production stays loaded as the fallback while the candidate is not ready
or its alias is gone), so its requests count under `<model>-staging`, variant `canary`.
*/}}
{{- define "inference.canary.env" -}}
- name: SLIPWAY_STAGING_SOURCE
  value: {{ required "staging.source is required when canary.gatewayAPI.enabled" .Values.staging.source | quote }}
- name: SLIPWAY_CANARY_MODE
  value: "canary"
- name: SLIPWAY_CANARY_WEIGHT
  value: "1"
{{- end }}

{{- define "inference.drift.labels" -}}
helm.sh/chart: {{ include "inference.chart" . }}
{{ include "inference.drift.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slipway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "inference.drift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inference.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: drift-monitor
{{- end }}

{{- define "inference.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inference.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image of the CPU serving image (also the drift monitor's). A digest pins it when given. */}}
{{- define "inference.cpuImage" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Image of the inference container: the torch (CUDA) build when gpu.enabled. */}}
{{- define "inference.image" -}}
{{- if .Values.gpu.enabled }}
{{- printf "%s:%s" .Values.image.repository (.Values.gpu.imageTag | default (printf "%s-torch" (.Values.image.tag | default .Chart.AppVersion))) }}
{{- else }}
{{- include "inference.cpuImage" . }}
{{- end }}
{{- end }}

{{/* The served model's name (the `model` label of every metric). */}}
{{- define "inference.modelName" -}}
{{- required "model.name is required" .Values.model.name }}
{{- end }}

{{/* Where the model comes from, as SLIPWAY_MODEL_SOURCE. */}}
{{- define "inference.modelSource" -}}
{{- if eq .Values.model.source "pvc" }}
{{- $_ := required "model.pvc.claimName is required when model.source is pvc" .Values.model.pvc.claimName }}
{{- .Values.model.pvc.mountPath }}
{{- else }}
{{- include "inference.registryRef" . }}
{{- end }}
{{- end }}

{{/* The served model's reference in MLflow: `model.mlflow.uri`, else the registered model with
its pinned `version` (GitOps mode) or its `alias` (registry-driven mode). */}}
{{- define "inference.registryRef" -}}
{{- $m := .Values.model }}
{{- $version := toString (default "" $m.version) }}
{{- if $m.mlflow.uri }}
{{- $m.mlflow.uri }}
{{- else if $version }}
{{- printf "models:/%s/%s" (default $m.name $m.mlflow.registeredModel) $version }}
{{- else }}
{{- printf "models:/%s@%s" (default $m.name $m.mlflow.registeredModel) (required "model.alias or model.version is required when model.source is mlflow" $m.alias) }}
{{- end }}
{{- end }}

{{/* True when the served model is one fixed version (GitOps mode): nothing to reload. */}}
{{- define "inference.pinned" -}}
{{- if eq .Values.model.source "mlflow" }}
{{- if regexMatch "^(models:/[^@/]+/[0-9]+|models:/m-[0-9a-f]{32}|runs:/.+)$" (include "inference.registryRef" .) }}true{{ end }}
{{- end }}
{{- end }}

{{/* Seconds between reload checks: 0 for a pinned version. */}}
{{- define "inference.reloadInterval" -}}
{{- if include "inference.pinned" . }}0{{ else }}{{ .Values.model.reloadIntervalSeconds | toString }}{{ end }}
{{- end }}

{{/* The drift monitor's reference: `drift.reference`, else the served model's. */}}
{{- define "inference.drift.reference" -}}
{{- if .Values.drift.reference }}
{{- .Values.drift.reference }}
{{- else if eq .Values.model.source "mlflow" }}
{{- include "inference.registryRef" . }}
{{- else }}
{{- fail "drift.reference is required when model.source is pvc (the drift monitor does not mount the model claim)" }}
{{- end }}
{{- end }}

{{/* True when the drift monitor reads the pods' prediction logs from a shared claim
(`drift.source: log`); with `prometheus` it needs no shared volume. */}}
{{- define "inference.drift.sharedLog" -}}
{{- if and .Values.drift.enabled (eq .Values.drift.source "log") }}true{{ end }}
{{- end }}

{{/* True when the inference pods write a prediction log. */}}
{{- define "inference.predictionLog.enabled" -}}
{{- if or .Values.predictionLog.enabled (include "inference.drift.sharedLog" .) }}true{{ end }}
{{- end }}

{{/* PromQL matchers that select this release's series in Prometheus. */}}
{{- define "inference.prometheus.selector" -}}
{{- .Values.prometheus.selector | default (printf "namespace=%q" .Release.Namespace) }}
{{- end }}

{{/* The registered model the rollout controller promotes or rolls back. */}}
{{- define "inference.registeredName" -}}
{{- default .Values.model.name .Values.model.mlflow.registeredModel }}
{{- end }}

{{/* Claim shared by the inference pods (writers) and the drift monitor (reader). */}}
{{- define "inference.predictionLog.claimName" -}}
{{- .Values.drift.sharedVolume.existingClaim | default (printf "%s-predictions" (include "inference.fullname" .)) }}
{{- end }}

{{/*
The log file an inference pod writes. On the shared claim every pod writes its own file, named
after the pod (`POD_NAME` from the downward API, expanded by the kubelet in `env`), so no two
replicas append to or rotate the same file; in an emptyDir the file name is fixed.
*/}}
{{- define "inference.predictionLog.path" -}}
{{- $dir := trimSuffix "/" .Values.predictionLog.mountPath }}
{{- if include "inference.drift.sharedLog" . }}
{{- printf "%s/$(POD_NAME).jsonl" $dir }}
{{- else }}
{{- printf "%s/%s" $dir .Values.predictionLog.fileName }}
{{- end }}
{{- end }}

{{/* What the drift monitor reads: every pod's log; the pattern never matches rotated `.jsonl.N` files. */}}
{{- define "inference.predictionLog.glob" -}}
{{- printf "%s/*.jsonl" (trimSuffix "/" .Values.predictionLog.mountPath) }}
{{- end }}

{{/* Name of the HPA that scales the Deployment: KEDA creates its own. */}}
{{- define "inference.hpaName" -}}
{{- if include "inference.keda.enabled" . }}
{{- printf "keda-hpa-%s" (include "inference.fullname" .) }}
{{- else }}
{{- include "inference.fullname" . }}
{{- end }}
{{- end }}

{{/*
PromQL label matchers that select this release's series in the alert rules; a scrape by the
chart's ServiceMonitor sets `job` to the Service name and `namespace` to the release namespace.
*/}}
{{- define "inference.rules.selector" -}}
{{- .Values.prometheusRule.params.selector | default (printf "job=%q, namespace=%q" (include "inference.fullname" .) .Release.Namespace) }}
{{- end }}

{{- define "inference.rules.driftSelector" -}}
{{- .Values.prometheusRule.params.driftSelector | default (printf "job=%q, namespace=%q" (include "inference.drift.fullname" .) .Release.Namespace) }}
{{- end }}

{{- define "inference.rules.hpaSelector" -}}
{{- .Values.prometheusRule.params.hpaSelector | default (printf "horizontalpodautoscaler=%q, namespace=%q" (include "inference.hpaName" .) .Release.Namespace) }}
{{- end }}

{{- define "inference.rules.deploymentSelector" -}}
{{- .Values.prometheusRule.params.deploymentSelector | default (printf "deployment=%q, namespace=%q" (include "inference.fullname" .) .Release.Namespace) }}
{{- end }}

{{/*
Container security context of the Kubernetes "restricted" Pod Security Standard, shared by every
container of the chart. Fixed here on purpose: values cannot weaken it.
*/}}
{{- define "inference.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod security context: restricted, with the image's non-root ids. */}}
{{- define "inference.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Env vars of MLflow and object-store credentials, each read from the existing Secret if present. */}}
{{- define "inference.mlflowSecretEnv" -}}
{{- with .Values.model.mlflow.existingSecret }}
{{- range $.Values.model.mlflow.secretKeys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.model.mlflow.existingSecret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end }}
{{- end }}

{{/*
Env vars of the inference container beyond the ConfigMap: the per-pod prediction log path (it
depends on POD_NAME, and `$(VAR)` expands only in `env`), secrets and extraEnv. `env` wins over
the ConfigMap's `envFrom`.
*/}}
{{- define "inference.env" -}}
{{- if include "inference.drift.sharedLog" . }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SLIPWAY_PREDICTION_LOG_PATH
  value: {{ include "inference.predictionLog.path" . | quote }}
{{- end }}
{{- include "inference.mlflowSecretEnv" . }}
{{- with .Values.auth.existingSecret }}
- name: SLIPWAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.auth.secretKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "inference.drift.env" -}}
{{- include "inference.mlflowSecretEnv" . }}
{{- with .Values.drift.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
