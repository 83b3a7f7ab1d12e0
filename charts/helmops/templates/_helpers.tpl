{{/* Names, labels and the pod template shared by every helmops Deployment. */}}

{{- define "helmops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "helmops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "helmops.serviceAccountName" -}}
{{- default (include "helmops.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "helmops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "helmops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "helmops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "helmops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "helmops.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{/* "true"/"false": --leader-elect for a Deployment of $replicas pods. */}}
{{- define "helmops.leaderElect" -}}
{{- $le := .root.Values.leaderElection.enabled -}}
{{- if kindIs "invalid" $le -}}
{{- gt (int .replicas) 1 -}}
{{- else -}}
{{- $le -}}
{{- end -}}
{{- end -}}

{{/*
The chart's own environment; a name also given in extraEnv is left out so extraEnv wins without a
duplicate entry. Values are strings, as Kubernetes requires.
*/}}
{{- define "helmops.env" -}}
{{- $v := .Values -}}
{{- $own := list
  (dict "name" "EXPERIMENTAL_HELM_OPS" "value" (toString $v.helmops.enabled))
  (dict "name" "HELMOPS_RECONCILER_WORKERS" "value" (toString $v.controller.workers))
  (dict "name" "HELMOPS_HELM_CONCURRENCY" "value" (toString $v.controller.helmConcurrency))
  (dict "name" "HELMOPS_RESYNC_PERIOD" "value" (ternary (printf "%vs" $v.controller.resyncSeconds) (toString $v.controller.resyncPeriod) (not (empty $v.controller.resyncSeconds))))
  (dict "name" "HELMOPS_DRIFT_CHECK_PERIOD" "value" (toString $v.controller.driftCheckPeriod))
  (dict "name" "HELMOPS_DRIFT_DELAY" "value" (toString $v.controller.driftDelay))
  (dict "name" "HELMOPS_POLL_CONCURRENCY" "value" (toString $v.controller.pollConcurrency))
  (dict "name" "HELMOPS_PENDING_GRACE_SECONDS" "value" (toString $v.controller.pendingGraceSeconds))
  (dict "name" "HELMOPS_BACKOFF_BASE_SECONDS" "value" (toString $v.controller.backoffBaseSeconds))
  (dict "name" "HELMOPS_BACKOFF_CAP_SECONDS" "value" (toString $v.controller.backoffCapSeconds))
  (dict "name" "HELMOPS_HELM_TERM_GRACE_SECONDS" "value" (toString $v.controller.helmTermGraceSeconds))
  (dict "name" "HELMOPS_REQUIRE_SERVICE_ACCOUNT" "value" (toString $v.controller.requireServiceAccount))
  (dict "name" "HELMOPS_MAX_TIMEOUT" "value" (toString $v.controller.maxTimeout))
  (dict "name" "HELMOPS_KUBECONFIG_SECRET_NAMESPACES" "value" (join "," $v.controller.kubeconfigSecretNamespaces))
  (dict "name" "HELMOPS_METRICS_BIND_ADDRESS" "value" (printf ":%v" $v.metrics.port))
  (dict "name" "HELMOPS_HEALTH_PORT" "value" (toString $v.health.port))
  (dict "name" "HOME" "value" "/home/helmops")
  (dict "name" "HELM_CACHE_HOME" "value" "/home/helmops/.cache/helm")
  (dict "name" "HELM_CONFIG_HOME" "value" "/home/helmops/.config/helm")
  (dict "name" "HELM_DATA_HOME" "value" "/home/helmops/.local/share/helm")
  (dict "name" "TMPDIR" "value" "/tmp")
  (dict "name" "HELMOPS_CHART_CACHE_DIR" "value" "/var/cache/helmops")
  (dict "name" "HELMOPS_CHART_CACHE_MAX_BYTES" "value" (toString (int64 $v.chartCache.maxBytes)))
  (dict "name" "PYTHONDONTWRITEBYTECODE" "value" "1")
-}}
{{- if $v.caBundle.enabled -}}
{{- $own = concat $own (list
  (dict "name" "HELMOPS_CA_BUNDLE_NAMESPACE" "value" (toString $v.caBundle.namespace))
  (dict "name" "HELMOPS_CA_BUNDLE_SECRET" "value" (toString $v.caBundle.secretName))
  (dict "name" "HELMOPS_CA_BUNDLE_KEY" "value" (toString $v.caBundle.key))
  (dict "name" "HELMOPS_CA_BUNDLE_ADDITIONAL_SECRET" "value" (toString $v.caBundle.additionalSecretName))
  (dict "name" "HELMOPS_CA_BUNDLE_ADDITIONAL_KEY" "value" (toString $v.caBundle.additionalKey))
) -}}
{{- end -}}
{{- range $key, $var := dict "leaseDuration" "CATTLE_ELECTION_LEASE_DURATION" "renewDeadline" "CATTLE_ELECTION_RENEW_DEADLINE" "retryPeriod" "CATTLE_ELECTION_RETRY_PERIOD" -}}
{{- with index $v.leaderElection $key -}}
{{- $own = append $own (dict "name" $var "value" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- $extraNames := list -}}
{{- range $v.extraEnv -}}
{{- $extraNames = append $extraNames .name -}}
{{- end -}}
- name: NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- range $own }}
{{- if not (has .name $extraNames) }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end }}
{{- range $v.extraEnv }}
- name: {{ .name }}
{{- if hasKey . "valueFrom" }}
  valueFrom:
    {{- toYaml .valueFrom | nindent 4 }}
{{- else }}
  value: {{ .value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
One helmops Deployment. Arguments: root (the chart context), shard (a shards[] entry or nil for the default
Deployment). Every workload goes through here, so scheduling (priorityClassName, nodeSelector, affinity,
tolerations) and the security context are identical everywhere.
*/}}
{{- define "helmops.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $shard := .shard -}}
{{- $name := include "helmops.fullname" $root -}}
{{- $replicas := int $v.replicas -}}
{{- $shardLabel := "default" -}}
{{- if $shard -}}
{{- $name = printf "%s-shard-%s" (include "helmops.fullname" $root) $shard.id | trunc 63 | trimSuffix "-" -}}
{{- $replicas = int (default 1 $shard.replicas) -}}
{{- $shardLabel = $shard.id -}}
{{- end -}}
{{- $leaderElect := include "helmops.leaderElect" (dict "root" $root "replicas" $replicas) | eq "true" -}}
{{- $nodeSelector := $v.nodeSelector | default (dict) -}}
{{- if and $shard $shard.nodeSelector -}}
{{- $nodeSelector = merge (deepCopy $shard.nodeSelector) (deepCopy $nodeSelector) -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "helmops.labels" $root | nindent 4 }}
    helmops.cattle.io/shard: {{ $shardLabel | quote }}
spec:
  replicas: {{ $replicas }}
  strategy:
    {{- if $leaderElect }}
    # New pods wait for the Lease, so they may start before the old ones stop.
    type: RollingUpdate
    {{- else }}
    # Without leader election, one controller at a time: the old pod stops (ending its helm calls) first.
    type: Recreate
    {{- end }}
  selector:
    matchLabels:
      {{- include "helmops.selectorLabels" $root | nindent 6 }}
      helmops.cattle.io/shard: {{ $shardLabel | quote }}
  template:
    metadata:
      labels:
        {{- include "helmops.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: controller
        helmops.cattle.io/shard: {{ $shardLabel | quote }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "helmops.serviceAccountName" $root }}
      automountServiceAccountToken: true
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with include "helmops.scheduling" (dict "Values" $v "nodeSelector" $nodeSelector) | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        {{- if kindIs "string" . }}
        - name: {{ . }}
        {{- else }}
        - name: {{ .name }}
        {{- end }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: helmops
          image: {{ include "helmops.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - run
            - --log-format
            - {{ $v.logFormat }}
            - --health-port
            - {{ $v.health.port | quote }}
            - --metrics-port
            - {{ $v.metrics.port | quote }}
            {{- if $shard }}
            - --shard-id
            - {{ $shard.id | quote }}
            {{- end }}
            {{- if $leaderElect }}
            - --leader-elect
            {{- end }}
            {{- range $v.watchNamespaces }}
            - --namespace
            - {{ . | quote }}
            {{- end }}
          env:
            {{- include "helmops.env" $root | nindent 12 }}
          ports:
            - name: health
              containerPort: {{ $v.health.port }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $v.metrics.port }}
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /healthz
              port: health
            {{- toYaml $v.health.livenessProbe | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /healthz
              port: health
            {{- toYaml $v.health.readinessProbe | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: helm-home
              mountPath: /home/helmops
            - name: chart-cache
              mountPath: /var/cache/helmops
      volumes:
        - name: tmp
          {{- include "helmops.emptyDir" $v.tmpVolume | nindent 10 }}
        - name: helm-home
          {{- include "helmops.emptyDir" $v.helmHomeVolume | nindent 10 }}
        - name: chart-cache
          {{- toYaml $v.chartCache.volume | nindent 10 }}
{{- end -}}

{{/* Scheduling fields for any pod spec the chart renders (Deployments, and any Job or Pod added later). */}}
{{- define "helmops.scheduling" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "helmops.emptyDir" -}}
{{- if .sizeLimit -}}
emptyDir:
  sizeLimit: {{ .sizeLimit }}
{{- else -}}
emptyDir: {}
{{- end -}}
{{- end -}}
