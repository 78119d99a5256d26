{{/* The release's full name, at most 63 characters. */}}
{{- define "node-monitor.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "node-monitor.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "node-monitor.labels" -}}
{{ include "node-monitor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "node-monitor.serviceAccountName" -}}
{{- default (include "node-monitor.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* True (non-empty) when the metrics endpoint binds a loopback address. */}}
{{- define "node-monitor.metricsOnLoopback" -}}
{{- if or (hasPrefix "127." .Values.metrics.host) (eq .Values.metrics.host "::1") -}}true{{- end -}}
{{- end -}}

{{/* The metrics listen address for the config file (podIP is passed as an env var). */}}
{{- define "node-monitor.metricsListen" -}}
{{- if contains ":" .Values.metrics.host -}}
{{- printf "[%s]:%d" .Values.metrics.host (int .Values.metrics.port) -}}
{{- else if eq .Values.metrics.host "podIP" -}}
{{- printf "127.0.0.1:%d" (int .Values.metrics.port) -}}
{{- else -}}
{{- printf "%s:%d" .Values.metrics.host (int .Values.metrics.port) -}}
{{- end -}}
{{- end -}}

{{/* The host the kubelet probes: the pod IP (the node's) unless the endpoint binds one address. */}}
{{- define "node-monitor.probeHost" -}}
{{- $h := .Values.metrics.host -}}
{{- if eq $h "0.0.0.0" -}}127.0.0.1
{{- else if eq $h "::" -}}::1
{{- else if ne $h "podIP" -}}{{ $h }}
{{- end -}}
{{- end -}}

{{/* Where the Secrets the config names are mounted: one directory per Secret. */}}
{{- define "node-monitor.secretsDir" -}}/var/run/secrets/node-monitor{{- end -}}

{{/*
The Secret volumes the values ask for, as a YAML list of {volume, secret, dir}: the daemon's
config names files under each dir (node-monitor.config), the DaemonSet mounts each.
*/}}
{{- define "node-monitor.secretVolumes" -}}
{{- $dir := include "node-monitor.secretsDir" . -}}
{{- $m := .Values.metrics -}}
{{- $syslog := .Values.sinks.syslog -}}
{{- $http := .Values.sinks.http -}}
{{- if $m.tls.enabled }}
- {volume: metrics-tls, secret: {{ $m.tls.secretName | quote }}, dir: {{ printf "%s/metrics-tls" $dir | quote }}}
{{- if $m.tls.clientCASecretName }}
- {volume: metrics-client-ca, secret: {{ $m.tls.clientCASecretName | quote }}, dir: {{ printf "%s/metrics-client-ca" $dir | quote }}}
{{- end }}
{{- end }}
{{- if $m.bearerTokenSecret.name }}
- {volume: metrics-token, secret: {{ $m.bearerTokenSecret.name | quote }}, dir: {{ printf "%s/metrics-token" $dir | quote }}}
{{- end }}
{{- if $syslog.enabled }}
{{- if $syslog.tls.caSecret.name }}
- {volume: syslog-ca, secret: {{ $syslog.tls.caSecret.name | quote }}, dir: {{ printf "%s/syslog-ca" $dir | quote }}}
{{- end }}
{{- if $syslog.tls.clientCertSecret }}
- {volume: syslog-client-tls, secret: {{ $syslog.tls.clientCertSecret | quote }}, dir: {{ printf "%s/syslog-client-tls" $dir | quote }}}
{{- end }}
{{- end }}
{{- if $http.enabled }}
{{- if $http.tokenSecret.name }}
- {volume: http-token, secret: {{ $http.tokenSecret.name | quote }}, dir: {{ printf "%s/http-token" $dir | quote }}}
{{- end }}
{{- if $http.tls.caSecret.name }}
- {volume: http-ca, secret: {{ $http.tls.caSecret.name | quote }}, dir: {{ printf "%s/http-ca" $dir | quote }}}
{{- end }}
{{- if $http.tls.clientCertSecret }}
- {volume: http-client-tls, secret: {{ $http.tls.clientCertSecret | quote }}, dir: {{ printf "%s/http-client-tls" $dir | quote }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* Combinations that cannot work: refused at render time, not silently ignored. */}}
{{- define "node-monitor.checks" -}}
{{- $m := .Values.metrics -}}
{{- if and $m.tls.enabled (not $m.tls.secretName) -}}
{{- fail "metrics.tls.enabled needs metrics.tls.secretName: a kubernetes.io/tls Secret with the endpoint's tls.crt and tls.key" -}}
{{- end -}}
{{- if and $m.tls.clientCASecretName (not $m.tls.enabled) -}}
{{- fail "metrics.tls.clientCASecretName needs metrics.tls.enabled: client certificates are asked for in the TLS handshake" -}}
{{- end -}}
{{- with .Values.sinks.syslog -}}
{{- if and .enabled (hasPrefix "tls://" .address) (not .tls.caSecret.name) -}}
{{- fail "sinks.syslog: a tls:// address needs sinks.syslog.tls.caSecret.name, the Secret with the receiver's CA (the system's roots are not used)" -}}
{{- end -}}
{{- if and .enabled (not (hasPrefix "tls://" .address)) (or .tls.caSecret.name .tls.clientCertSecret .tls.serverName) -}}
{{- fail "sinks.syslog.tls is only for a tls:// address" -}}
{{- end -}}
{{- end -}}
{{- with .Values.sinks.http -}}
{{- if and .enabled .tokenSecret.name (hasKey (default dict .headers) "Authorization") -}}
{{- fail "sinks.http: tokenSecret and an Authorization header both set the Authorization header; keep the token in tokenSecret" -}}
{{- end -}}
{{- if and .enabled (or .tls.caSecret.name .tls.clientCertSecret) (not (hasPrefix "https://" .url)) -}}
{{- fail "sinks.http.tls needs an https:// url" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor selects the metrics Service" -}}
{{- end -}}
{{- if and .Values.service.enabled (include "node-monitor.metricsOnLoopback" .) -}}
{{- fail (printf "service.enabled: metrics.host %s is a loopback address that nothing outside the node can scrape; set metrics.host to podIP or a node address" .Values.metrics.host) -}}
{{- end -}}
{{- if gt (int .Values.audit.timeoutSeconds) (int .Values.audit.intervalSeconds) -}}
{{- fail (printf "audit.timeoutSeconds (%v) is longer than audit.intervalSeconds (%v): one run would still go when the next is due" .Values.audit.timeoutSeconds .Values.audit.intervalSeconds) -}}
{{- end -}}
{{- if not (or .Values.sinks.stdout.enabled .Values.sinks.syslog.enabled .Values.sinks.http.enabled) -}}
{{- fail "sinks: enable at least one sink (stdout, syslog or http): alerts would go nowhere" -}}
{{- end -}}
{{- end -}}

{{/* The daemon's config file (node-monitor/CONFIG.md). */}}
{{- define "node-monitor.config" -}}
# Rendered by the node-monitor Helm chart from its values; `node-monitor check-config` accepts it.
interfaces: {{ toJson .Values.interfaces }}
pod_interfaces: {{ toJson (concat .Values.podInterfaces.patterns .Values.podInterfaces.extra | uniq) }}
attach: {{ .Values.attach }}
groups:
{{- range $name, $g := .Values.groups }}
{{- if $g }}
  {{ $name }}:
    protocols: {{ toJson $g.protocols }}
    ports: {{ toJson $g.ports }}
    allow: {{ toJson (default (list) $g.allow) }}
    action: {{ default "monitor" $g.action }}
    {{- if hasKey $g "detect_sweeps" }}
    detect_sweeps: {{ $g.detect_sweeps }}
    {{- end }}
{{- end }}
{{- end }}
{{- with .Values.sampling }}
sampling:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.limits }}
limits:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.alerts }}
alerts:
  {{- toYaml . | nindent 2 }}
{{- end }}
sinks:
{{- with .Values.sinks.stdout }}{{ if .enabled }}
  - type: stdout
    format: {{ .format }}
    flows: {{ .flows }}
{{- end }}{{ end }}
{{- $dir := include "node-monitor.secretsDir" . }}
{{- with .Values.sinks.syslog }}{{ if .enabled }}
  - type: syslog
    address: {{ .address | quote }}
    format: {{ .format }}
    {{- if hasPrefix "tls://" .address }}
    tls:
      ca_file: {{ printf "%s/syslog-ca/%s" $dir .tls.caSecret.key | quote }}
      {{- if .tls.clientCertSecret }}
      cert_file: {{ printf "%s/syslog-client-tls/tls.crt" $dir | quote }}
      key_file: {{ printf "%s/syslog-client-tls/tls.key" $dir | quote }}
      {{- end }}
      {{- with .tls.serverName }}
      server_name: {{ . | quote }}
      {{- end }}
    {{- end }}
{{- end }}{{ end }}
{{- with .Values.sinks.http }}{{ if .enabled }}
  - type: http
    url: {{ .url | quote }}
    format: {{ .format }}
    {{- with .headers }}
    headers:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if .tokenSecret.name }}
    bearer_token_file: {{ printf "%s/http-token/%s" $dir .tokenSecret.key | quote }}
    {{- end }}
    {{- if or .tls.caSecret.name .tls.clientCertSecret }}
    tls:
      {{- if .tls.caSecret.name }}
      ca_file: {{ printf "%s/http-ca/%s" $dir .tls.caSecret.key | quote }}
      {{- end }}
      {{- if .tls.clientCertSecret }}
      cert_file: {{ printf "%s/http-client-tls/tls.crt" $dir | quote }}
      key_file: {{ printf "%s/http-client-tls/tls.key" $dir | quote }}
      {{- end }}
    {{- end }}
{{- end }}{{ end }}
metrics:
  listen: {{ include "node-monitor.metricsListen" . | quote }}
  {{- with .Values.metrics }}
  {{- if .tls.enabled }}
  tls:
    cert_file: {{ printf "%s/metrics-tls/tls.crt" $dir | quote }}
    key_file: {{ printf "%s/metrics-tls/tls.key" $dir | quote }}
    {{- if .tls.clientCASecretName }}
    client_ca_file: {{ printf "%s/metrics-client-ca/%s" $dir .tls.clientCAKey | quote }}
    {{- end }}
  {{- end }}
  {{- if .bearerTokenSecret.name }}
  bearer_token_file: {{ printf "%s/metrics-token/%s" $dir .bearerTokenSecret.key | quote }}
  {{- end }}
  {{- end }}
cluster:
  enabled: {{ .Values.cluster.enabled | quote }}
{{- with .Values.audit }}
audit:
  enabled: {{ .enabled }}
  interval_s: {{ .intervalSeconds }}
  timeout_s: {{ .timeoutSeconds }}
  min_severity: {{ .minSeverity }}
  {{- if .kubeletConfig }}
  # The node's file, mounted at the same path (audit.kubeletConfig).
  kubelet_config: {{ .kubeletConfig | quote }}
  {{- end }}
  {{- if and .manifestsDir (ne .manifestsDir "/etc/kubernetes/manifests") }}
  apiserver_manifest: {{ printf "%s/kube-apiserver.yaml" .manifestsDir | quote }}
  {{- end }}
{{- end }}
{{- end -}}
