{{/*
Names. Kubernetes names are DNS labels: truncate to 63 characters and trim a trailing "-".
*/}}
{{- define "captcha-key-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or <release> when it already contains the chart name.
*/}}
{{- define "captcha-key-agent.fullname" -}}
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

{{/*
A derived name "<fullname>-<suffix>", still at most 63 characters.
Usage: include "captcha-key-agent.componentName" (list . "webhook")
*/}}
{{- define "captcha-key-agent.componentName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $full := include "captcha-key-agent.fullname" $root }}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "captcha-key-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "captcha-key-agent.labels" -}}
helm.sh/chart: {{ include "captcha-key-agent.chart" . }}
{{ include "captcha-key-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: captcha-key-agent
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable across upgrades (never the chart version).
*/}}
{{- define "captcha-key-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "captcha-key-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Operator component labels.
*/}}
{{- define "captcha-key-agent.operator.labels" -}}
{{ include "captcha-key-agent.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "captcha-key-agent.operator.selectorLabels" -}}
{{ include "captcha-key-agent.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Common annotations, as a block to put under "annotations:" (may be empty).
*/}}
{{- define "captcha-key-agent.annotations" -}}
{{- with .Values.global.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "captcha-key-agent.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "captcha-key-agent.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Object names fixed by docs/contract.md (with the default release name they are exactly the
contract's names).
*/}}
{{- define "captcha-key-agent.webhookServiceName" -}}
{{ include "captcha-key-agent.componentName" (list . "webhook") }}
{{- end }}

{{- define "captcha-key-agent.metricsServiceName" -}}
{{ include "captcha-key-agent.componentName" (list . "metrics") }}
{{- end }}

{{- define "captcha-key-agent.webhookConfigurationName" -}}
{{ include "captcha-key-agent.fullname" . }}
{{- end }}

{{/*
kopf peering: the ClusterKopfPeering's name ("" when peering is off: the operator runs
standalone).
*/}}
{{- define "captcha-key-agent.peeringName" -}}
{{- if .Values.operator.peering.enabled }}
{{- include "captcha-key-agent.fullname" . }}
{{- end }}
{{- end }}

{{- define "captcha-key-agent.tlsSecretName" -}}
{{- default (include "captcha-key-agent.componentName" (list . "webhook-tls")) .Values.webhook.tls.secretName }}
{{- end }}

{{- define "captcha-key-agent.configMapName" -}}
{{ include "captcha-key-agent.componentName" (list . "config") }}
{{- end }}

{{/*
Which TLS mode is on.
*/}}
{{- define "captcha-key-agent.certManagerEnabled" -}}
{{- if eq .Values.webhook.tls.mode "cert-manager" }}true{{ end }}
{{- end }}

{{/*
Image references.
*/}}
{{- define "captcha-key-agent.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "captcha-key-agent.sidecarImage" -}}
{{- if or .Values.sidecar.image.repository .Values.sidecar.image.tag }}
{{- printf "%s:%s" (default .Values.image.repository .Values.sidecar.image.repository) (default (default .Chart.AppVersion .Values.image.tag) .Values.sidecar.image.tag) }}
{{- else }}
{{- include "captcha-key-agent.image" . }}
{{- end }}
{{- end }}

{{- define "captcha-key-agent.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Paths inside the operator pod.
*/}}
{{- define "captcha-key-agent.vaultTokenDir" -}}/var/run/secrets/captchakeys/vault{{- end }}
{{- define "captcha-key-agent.vaultCaDir" -}}/etc/captchakeys/vault-ca{{- end }}
{{- define "captcha-key-agent.certDir" -}}/etc/captchakeys/tls{{- end }}

{{- define "captcha-key-agent.vaultCaCertFile" -}}
{{- if or .Values.vault.caCert.secretName .Values.vault.caCert.configMapName }}
{{- printf "%s/%s" (include "captcha-key-agent.vaultCaDir" .) .Values.vault.caCert.key }}
{{- end }}
{{- end }}

{{/*
Checks that the schema cannot express.
*/}}
{{- define "captcha-key-agent.validate" -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.peering.enabled) }}
{{- fail "operator.replicas > 1 needs operator.peering.enabled=true: otherwise every replica keeps status" }}
{{- end }}
{{- if and .Values.vault.caCert.secretName .Values.vault.caCert.configMapName }}
{{- fail "vault.caCert: set secretName or configMapName, not both" }}
{{- end }}
{{- end }}
