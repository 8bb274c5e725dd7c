{{- define "saga.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "saga.labels" -}}
app.kubernetes.io/name: saga-orchestrator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "saga.selector" -}}
app.kubernetes.io/name: saga-orchestrator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "saga.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Non-root, nothing writable but the volumes, no privilege to gain. */}}
{{- define "saga.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "saga.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The settings every process of the orchestrator reads. */}}
{{- define "saga.env" -}}
- name: KAFKA_BROKER_URL
  value: {{ .Values.kafka.brokerUrl | quote }}
- name: TOPIC_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: TOPIC_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.saslMechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ .Values.kafka.saslUsername | quote }}
- name: BROKER_URL
  value: {{ .Values.pulsar.brokerUrl | quote }}
- name: DATABASE_URL
  value: {{ .Values.database.url | quote }}
- name: INTEGRACIONES_API_URL
  value: {{ .Values.participants.integracionesApiUrl | quote }}
- name: ALIANZAS_API_URL
  value: {{ .Values.participants.alianzasApiUrl | quote }}
{{- range $name, $key := .Values.secrets.files }}
{{- if $key }}
- name: {{ $name }}
  value: {{ printf "/run/secrets/saga/%s" $key | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "saga.secretVolumes" -}}
- name: secrets
  secret:
    secretName: {{ .Values.secrets.name }}
    defaultMode: 0400
{{- if .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
{{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "saga.secretMounts" -}}
- name: secrets
  mountPath: /run/secrets/saga
  readOnly: true
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: /run/tls
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}
