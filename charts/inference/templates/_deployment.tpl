{{/*
The inference Deployment, rendered twice from one pod template: the stable one (deployment.yaml)
and, for the Gateway API canary, `<fullname>-canary` (canary-deployment.yaml), whose pods carry
`app.kubernetes.io/component: canary` (so the stable Service and Deployment never select them)
and answer with the candidate. The context is a dict of the root's fields plus `canary` (bool).
*/}}
{{- define "inference.deployment" -}}
{{- $logOn := include "inference.predictionLog.enabled" . }}
{{- $selector := ternary (include "inference.canary.selectorLabels" .) (include "inference.selectorLabels" .) .canary }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ ternary (include "inference.canary.fullname" .) (include "inference.fullname" .) .canary }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- ternary (include "inference.canary.labels" .) (include "inference.labels" .) .canary | nindent 4 }}
spec:
  {{- if .canary }}
  replicas: {{ .Values.canary.gatewayAPI.replicas }}
  {{- else if not (or (include "inference.hpa.enabled" .) (include "inference.keda.enabled" .)) }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ .Values.revisionHistoryLimit }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # Never drop below the current capacity during a rollout; new pods must be ready first.
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- $selector | nindent 8 }}
        app.kubernetes.io/part-of: slipway
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "inference.serviceAccountName" . }}
      automountServiceAccountToken: false
      # No `<SERVICE>_PORT`-style variables: for this chart's own Services they would be named
      # SLIPWAY_INFERENCE_*, which the service refuses at start as unknown settings.
      enableServiceLinks: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- include "inference.podSecurityContext" . | nindent 8 }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      {{- if .Values.topologySpread.enabled }}
      topologySpreadConstraints:
        - maxSkew: {{ .Values.topologySpread.maxSkew }}
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: {{ .Values.topologySpread.nodeWhenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
          matchLabelKeys:
            - pod-template-hash
        - maxSkew: {{ .Values.topologySpread.maxSkew }}
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: {{ .Values.topologySpread.zoneWhenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
          matchLabelKeys:
            - pod-template-hash
      {{- end }}
      containers:
        - name: server
          image: {{ include "inference.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .Values.server.port }}
              protocol: TCP
            {{- if .Values.server.grpcPort }}
            - name: grpc
              containerPort: {{ .Values.server.grpcPort }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "inference.fullname" . }}
          {{- $env := include "inference.env" . | trim }}
          {{- if .canary }}
          {{- $env = printf "%s\n%s" (include "inference.canary.env" . | trim) $env | trim }}
          {{- end }}
          {{- with $env }}
          env:
            {{- . | nindent 12 }}
          {{- end }}
          startupProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ .Values.probes.startup.periodSeconds }}
            failureThreshold: {{ .Values.probes.startup.failureThreshold }}
            timeoutSeconds: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
            failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
            failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
          lifecycle:
            preStop:
              # Keep serving while the endpoint removal reaches every proxy; SIGTERM follows,
              # then the service drains for server.drainSeconds.
              exec:
                command: ["sleep", "{{ .Values.preStopSleepSeconds }}"]
          resources:
            {{- $resources := deepCopy .Values.resources }}
            {{- if .Values.gpu.enabled }}
            {{- $limits := $resources.limits | default dict }}
            {{- $_ := set $limits "nvidia.com/gpu" (.Values.gpu.count | int64) }}
            {{- $_ := set $resources "limits" $limits }}
            {{- end }}
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- include "inference.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if eq .Values.model.source "pvc" }}
            - name: model
              mountPath: {{ .Values.model.pvc.mountPath }}
              {{- with .Values.model.pvc.subPath }}
              subPath: {{ . }}
              {{- end }}
              readOnly: true
            {{- end }}
            {{- if $logOn }}
            - name: predictions
              mountPath: {{ .Values.predictionLog.mountPath }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ .Values.tmpSizeLimit }}
        {{- if eq .Values.model.source "pvc" }}
        - name: model
          persistentVolumeClaim:
            claimName: {{ .Values.model.pvc.claimName }}
            readOnly: true
        {{- end }}
        {{- if $logOn }}
        - name: predictions
          {{- if include "inference.drift.sharedLog" . }}
          persistentVolumeClaim:
            claimName: {{ include "inference.predictionLog.claimName" . }}
          {{- else }}
          emptyDir:
            sizeLimit: {{ .Values.predictionLog.sizeLimit }}
          {{- end }}
        {{- end }}
      {{- $nodeSelector := merge (dict) (.Values.nodeSelector | default dict) (ternary .Values.gpu.nodeSelector (dict) .Values.gpu.enabled) }}
      {{- with $nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- $tolerations := concat (.Values.tolerations | default list) (ternary .Values.gpu.tolerations (list) .Values.gpu.enabled) }}
      {{- with $tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
