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

{{/* Environment shared by both components: the Secret's keys and the namespace. */}}
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
