{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "landfall.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Kept to 40 characters so that "<fullname>-<connector>" fits the
52 characters a CronJob name may have.
*/}}
{{- define "landfall.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "landfall.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of a connector's objects (ConfigMap, CronJob): "<fullname>-<connector>", with "_" as
"-" because object names are DNS labels. Connector names cannot contain "-", so two
connectors never map to one name. Fails instead of truncating, which could collide.
Call with (dict "root" $ "connector" $name).
*/}}
{{- define "landfall.connectorResourceName" -}}
{{- $name := printf "%s-%s" (include "landfall.fullname" .root) (.connector | replace "_" "-") }}
{{- if gt (len $name) 52 }}
{{- fail (printf "connector %q: object name %q is longer than 52 characters (the CronJob limit); use a shorter connector name or set fullnameOverride" .connector $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "landfall.labels" -}}
helm.sh/chart: {{ include "landfall.chart" . }}
{{ include "landfall.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: landfall
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "landfall.selectorLabels" -}}
app.kubernetes.io/name: {{ include "landfall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that identify landfall pods; the NetworkPolicy selects on these by default.
Airflow mode: the DAG must put them on its KubernetesPodOperator pods.
*/}}
{{- define "landfall.podIdentityLabels" -}}
app.kubernetes.io/name: {{ include "landfall.name" . }}
app.kubernetes.io/component: extractor
{{- end }}

{{/*
Labels of landfall pods created by this chart.
*/}}
{{- define "landfall.podLabels" -}}
{{ include "landfall.labels" . }}
app.kubernetes.io/component: extractor
{{- if .Values.workloadIdentity.azure.clientId }}
azure.workload.identity/use: "true"
{{- end }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "landfall.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "landfall.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "landfall.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "landfall.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "landfall.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
envFrom entries: the chart-wide Secrets, then the connector's own.
Call with (dict "root" $ "connector" $spec).
*/}}
{{- define "landfall.envFrom" -}}
{{- range $secret := concat .root.Values.envFromSecrets (.connector.envFromSecrets | default list) | uniq }}
- secretRef:
    name: {{ $secret | quote }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by every pod the chart renders.
*/}}
{{- define "landfall.podCommon" -}}
serviceAccountName: {{ include "landfall.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
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
{{- end }}

{{/*
The writable scratch volume at /tmp (the root filesystem is read-only).
*/}}
{{- define "landfall.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{/*
A connector's config.yaml text. Call with the connector's values.
*/}}
{{- define "landfall.connectorConfig" -}}
{{- if .configYaml }}
{{- .configYaml | trimSuffix "\n" }}
{{- else }}
{{- toYaml .config }}
{{- end }}
{{- end }}
