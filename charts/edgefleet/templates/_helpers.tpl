{{- define "edgefleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "edgefleet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "edgefleet.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "edgefleet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "edgefleet.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secrets" (include "edgefleet.fullname" .)) -}}
{{- end -}}

{{- define "edgefleet.internalService" -}}
{{- printf "%s-southbound-internal" (include "edgefleet.fullname" .) -}}
{{- end -}}

{{/* Environment shared by both components: the Secret's keys, the namespace, and the
settings both must agree on (the status-write budget is the installation's). */}}
{{- define "edgefleet.env" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: EDGEFLEET_KUBE_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: EDGEFLEET_DB_URL
  valueFrom: {secretKeyRef: {name: {{ include "edgefleet.secretName" . }}, key: database-url}}
- name: EDGEFLEET_INTERNAL_TOKEN
  valueFrom: {secretKeyRef: {name: {{ include "edgefleet.secretName" . }}, key: internal-token}}
- name: EDGEFLEET_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: EDGEFLEET_BCRYPT_ROUNDS
  value: {{ .Values.bcryptRounds | quote }}
- name: EDGEFLEET_KUBE_STATUS_BUDGET
  value: {{ .Values.kube.statusWritesPerSecond | quote }}
{{- end -}}

{{- define "edgefleet.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The ServiceAccount of a component; called with (dict "root" $ "component" "controller"). */}}
{{- define "edgefleet.serviceAccountName" -}}
{{- $account := (index .root.Values .component).serviceAccount -}}
{{- if $account.create -}}
{{- $account.name | default (printf "%s-%s" (include "edgefleet.fullname" .root) .component) -}}
{{- else -}}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false (the chart binds its Role to it)" .component .component) $account.name -}}
{{- end -}}
{{- end -}}

{{/* Pod annotations of a component: the Secret's checksum (a changed Secret restarts
the pods, which read it once as environment) and the user's podAnnotations. */}}
{{- define "edgefleet.podAnnotations" -}}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- with (index .root.Values .component).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Where a component's pods may run: affinity (the default given as "fallback"),
topology spread constraints (an entry without labelSelector spreads this
component's own pods), and the chart-wide pod settings. */}}
{{- define "edgefleet.podPlacement" -}}
{{- $values := index .root.Values .component -}}
{{- $selector := include "edgefleet.selector" . | fromYaml -}}
serviceAccountName: {{ include "edgefleet.serviceAccountName" . }}
{{- with ($values.affinity | default .fallback) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  {{- $constraint := deepCopy . }}
  {{- if not $constraint.labelSelector }}
  {{- $_ := set $constraint "labelSelector" (dict "matchLabels" $selector) }}
  {{- end }}
  - {{ toYaml $constraint | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{ include "edgefleet.podSecurity" .root }}
{{- end -}}

{{/* Probes of a container: startup (its budget in seconds, for a migration or a wait
for one), liveness and readiness. */}}
{{- define "edgefleet.probes" -}}
startupProbe:
  httpGet: {path: {{ .live }}, port: {{ .port }}}
  periodSeconds: 5
  failureThreshold: {{ max 1 (div .startupSeconds 5) }}
livenessProbe:
  httpGet: {path: {{ .live }}, port: {{ .port }}}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: {{ .ready }}, port: {{ .port }}}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{- /* Where devices' files are: the object store's settings, or the mounted folder. */}}
{{- define "edgefleet.filesEnv" -}}
{{- $files := .Values.files }}
{{- if $files.url }}
- name: EDGEFLEET_FILES_URL
  value: {{ $files.url | quote }}
- name: EDGEFLEET_FILES_REGION
  value: {{ $files.region | quote }}
- name: EDGEFLEET_FILES_ADDRESSING_STYLE
  value: {{ $files.addressingStyle | quote }}
{{- if $files.endpoint }}
- name: EDGEFLEET_FILES_ENDPOINT
  value: {{ $files.endpoint | quote }}
{{- end }}
{{- if $files.credentialsSecret }}
- name: EDGEFLEET_FILES_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ $files.credentialsSecret }}, key: access-key-id}}
- name: EDGEFLEET_FILES_SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ $files.credentialsSecret }}, key: access-key-secret}}
{{- end }}
{{- else }}
- name: EDGEFLEET_FILES_DIR
  value: /var/lib/edgefleet/files
{{- end }}
- name: EDGEFLEET_MAX_FILE_BYTES
  value: {{ $files.maxFileBytes | int64 | quote }}
{{- end -}}

{{- define "edgefleet.filesClaim" -}}
{{- .Values.files.persistence.existingClaim | default (printf "%s-files" (include "edgefleet.fullname" .)) }}
{{- end -}}
