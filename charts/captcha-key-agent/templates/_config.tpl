{{/*
The operator's configuration file, in the format of docs/contract.md. Strings go through
toJson so that any value is valid YAML.
*/}}
{{- define "captcha-key-agent.operatorConfig" -}}
{{- if not (has .Values.sidecar.tokenAudience .Values.vault.allowedAudiences) }}
{{- fail (printf "sidecar.tokenAudience %q must be one of vault.allowedAudiences %v" .Values.sidecar.tokenAudience .Values.vault.allowedAudiences) }}
{{- end }}
{{- range .Values.vault.allowedAddresses }}
{{- if and (hasPrefix "http:" .) (not $.Values.vault.allowInsecureHttp) }}
{{- fail (printf "vault.allowedAddresses: %s is plain http, which sends tokens in the clear: use https, or set vault.allowInsecureHttp=true (development only)" .) }}
{{- end }}
{{- end -}}
vault:
  address: {{ .Values.vault.address | toJson }}
  caCertFile: {{ include "captcha-key-agent.vaultCaCertFile" . | toJson }}
  namespace: {{ .Values.vault.namespace | toJson }}
  auth:
    method: {{ .Values.vault.auth.method | toJson }}
    mount: {{ default .Values.vault.auth.method .Values.vault.auth.mount | toJson }}
    role: {{ .Values.vault.auth.role | toJson }}
    tokenFile: {{ printf "%s/token" (include "captcha-key-agent.vaultTokenDir" .) | toJson }}
    audience: {{ .Values.vault.auth.audience | toJson }}
  allowedAddresses: {{ .Values.vault.allowedAddresses | toJson }}
  allowedAudiences: {{ .Values.vault.allowedAudiences | toJson }}
  allowInsecureHttp: {{ .Values.vault.allowInsecureHttp }}
kv:
  mount: {{ .Values.kv.mount | toJson }}
  pathPrefix: {{ .Values.kv.pathPrefix | toJson }}
aws:
  accounts: {{ .Values.aws.accounts | toJson }}
  secretPrefix: {{ .Values.aws.secretPrefix | toJson }}
  endpointUrl: {{ .Values.aws.endpointUrl | toJson }}
  audiences: {{ .Values.aws.audiences | toJson }}
environments: {{ .Values.environments | toJson }}
environmentNamespaces: {{ .Values.environmentNamespaces | toJson }}
statusPollSeconds: {{ int .Values.operator.statusPollSeconds }}
vaultReadsPerSecond: {{ int .Values.operator.vaultReadsPerSecond }}
peering:
  name: {{ include "captcha-key-agent.peeringName" . | toJson }}
webhook:
  port: 8443
  timeoutSeconds: {{ int .Values.webhook.timeoutSeconds }}
  serviceName: {{ include "captcha-key-agent.webhookServiceName" . | toJson }}
  mutatingWebhookConfiguration: {{ include "captcha-key-agent.webhookConfigurationName" . | toJson }}
  validatingWebhookConfiguration: {{ include "captcha-key-agent.webhookConfigurationName" . | toJson }}
  tls:
    mode: {{ .Values.webhook.tls.mode | toJson }}
    secretName: {{ include "captcha-key-agent.tlsSecretName" . | toJson }}
    certDir: {{ include "captcha-key-agent.certDir" . | toJson }}
injection:
  image: {{ include "captcha-key-agent.sidecarImage" . | toJson }}
  imagePullPolicy: {{ default .Values.image.pullPolicy .Values.sidecar.image.pullPolicy | toJson }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  refreshIntervalSeconds: {{ int .Values.sidecar.refreshIntervalSeconds }}
  mountPath: {{ .Values.sidecar.mountPath | toJson }}
  tokenAudience: {{ .Values.sidecar.tokenAudience | toJson }}
  tokenExpirationSeconds: {{ int .Values.sidecar.tokenExpirationSeconds }}
  logLevel: {{ .Values.sidecar.log.level | toJson }}
  logFormat: {{ .Values.sidecar.log.format | toJson }}
  vaultCaConfigMap: {{ .Values.sidecar.vaultCaConfigMap | toJson }}
log:
  level: {{ .Values.operator.log.level | toJson }}
  format: {{ .Values.operator.log.format | toJson }}
{{- end }}
