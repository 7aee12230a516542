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

{{/*
Egress rules of networkPolicy.egress "restricted": DNS, api, storage, the identity rules
switched on, extraEgress. Empty when nothing is allowed.
*/}}
{{- define "landfall.restrictedEgress" -}}
{{- $np := .Values.networkPolicy }}
{{- $id := $np.identity | default dict }}
{{- if $np.dns.enabled }}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $np.dns.namespace }}
      {{- with $np.dns.podSelector }}
      podSelector:
        matchLabels:
          {{- toYaml . | nindent 10 }}
      {{- end }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
{{- range $rule := concat $np.api $np.storage }}
- to:
    - ipBlock:
        cidr: {{ $rule.cidr }}
        {{- with $rule.except }}
        except:
          {{- toYaml . | nindent 10 }}
        {{- end }}
  ports:
    {{- range $port := $rule.ports | default (list 443) }}
    - protocol: TCP
      port: {{ $port | int }}
    {{- end }}
{{- end }}
{{- with $id.awsSts }}
{{- if .enabled }}
{{- if not .cidrs }}
{{- fail "networkPolicy.identity.awsSts.enabled needs cidrs: the CIDRs of your STS VPC endpoint (or of the region's STS ranges)" }}
{{- end }}
# AWS STS (IRSA web identity)
- to:
    {{- range .cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - protocol: TCP
      port: 443
{{- end }}
{{- end }}
{{- if and $id.awsPodIdentity $id.awsPodIdentity.enabled }}
# EKS Pod Identity agent
- to:
    - ipBlock:
        cidr: 169.254.170.23/32
    - ipBlock:
        cidr: fd00:ec2::23/128
  ports:
    - protocol: TCP
      port: 80
{{- end }}
{{- if and $id.gkeMetadata $id.gkeMetadata.enabled }}
# GKE metadata server (metadata.google.internal)
- to:
    - ipBlock:
        cidr: 169.254.169.254/32
  ports:
    - protocol: TCP
      port: 80
- to:
    - ipBlock:
        cidr: 169.254.169.252/32
  ports:
    - protocol: TCP
      port: 988
{{- end }}
{{- if and $id.azureImds $id.azureImds.enabled }}
# Azure Instance Metadata Service
- to:
    - ipBlock:
        cidr: 169.254.169.254/32
  ports:
    - protocol: TCP
      port: 80
{{- end }}
{{- with $id.entraLogin }}
{{- if .enabled }}
{{- if not .cidrs }}
{{- fail "networkPolicy.identity.entraLogin.enabled needs cidrs: the AzureActiveDirectory service tag ranges or your egress proxy" }}
{{- end }}
# Entra ID token endpoint (login.microsoftonline.com)
- to:
    {{- range .cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - protocol: TCP
      port: 443
{{- end }}
{{- end }}
{{- with $np.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Environment of every landfall container the chart renders: writable HOME/TMPDIR, lineage and
metrics, the chart-wide env, then the connector's. Call with (dict "root" $ "connector" $spec).
*/}}
{{- define "landfall.env" -}}
{{- $v := .root.Values }}
- name: HOME
  value: /tmp
- name: TMPDIR
  value: /tmp
{{- with $v.openLineage.url }}
- name: OPENLINEAGE_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.openLineage.namespace }}
- name: OPENLINEAGE_NAMESPACE
  value: {{ . | quote }}
{{- end }}
{{- with $v.openLineage.apiKeySecret }}
{{- if .name }}
- name: OPENLINEAGE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ required "openLineage.apiKeySecret.key is required with openLineage.apiKeySecret.name" .key | quote }}
{{- end }}
{{- end }}
{{- with $v.metrics.pushUrl }}
- name: LANDFALL_METRICS_PUSH_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.env }}
{{ toYaml . }}
{{- end }}
{{- with .connector.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
A duration such as 26h, 90m, 2d or 3600s as seconds (for PromQL comparisons with time()).
*/}}
{{- define "landfall.promDurationSeconds" -}}
{{- $match := regexFind "^[0-9]+(s|m|h|d|w)$" . }}
{{- if not $match }}
{{- fail (printf "metrics.prometheusRule.staleSuccess.after: %q is not a duration like 26h, 90m or 2d" .) }}
{{- end }}
{{- $n := trimSuffix (substr (sub (len .) 1 | int) (len .) .) . | int }}
{{- $unit := substr (sub (len .) 1 | int) (len .) . }}
{{- $factor := get (dict "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800) $unit }}
{{- mul $n $factor }}
{{- end }}
