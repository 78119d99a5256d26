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

{{/* Values the daemon cannot honour yet: refused rather than silently ignored. */}}
{{- define "node-monitor.checks" -}}
{{- if .Values.metrics.tls.enabled -}}
{{- fail "metrics.tls: the daemon has no TLS config for its metrics endpoint yet (to be wired when the TLS config lands); keep metrics.host on loopback or a trusted network until then" -}}
{{- end -}}
{{- if .Values.sinks.http.tokenSecret.name -}}
{{- fail "sinks.http.tokenSecret: the daemon reads no bearer token file yet (to be wired when the TLS config lands); put the whole config, Authorization header included, in a Secret of your own and name it in configSecret" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor selects the metrics Service" -}}
{{- end -}}
{{- if and .Values.service.enabled (include "node-monitor.metricsOnLoopback" .) -}}
{{- fail (printf "service.enabled: metrics.host %s is a loopback address that nothing outside the node can scrape; set metrics.host to podIP or a node address" .Values.metrics.host) -}}
{{- end -}}
{{- if not (or .Values.sinks.stdout.enabled .Values.sinks.syslog.enabled .Values.sinks.http.enabled) -}}
{{- fail "sinks: enable at least one sink (stdout, syslog or http): alerts would go nowhere" -}}
{{- end -}}
{{- end -}}

{{/* The daemon's config file (node-monitor/CONFIG.md). */}}
{{- define "node-monitor.config" -}}
# Rendered by the node-monitor Helm chart from its values; `node-monitor check-config` accepts it.
interfaces: {{ toJson .Values.interfaces }}
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
{{- with .Values.sinks.syslog }}{{ if .enabled }}
  - type: syslog
    address: {{ .address | quote }}
    format: {{ .format }}
{{- end }}{{ end }}
{{- with .Values.sinks.http }}{{ if .enabled }}
  - type: http
    url: {{ .url | quote }}
    format: {{ .format }}
    {{- with .headers }}
    headers:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}{{ end }}
metrics:
  listen: {{ include "node-monitor.metricsListen" . | quote }}
cluster:
  enabled: {{ .Values.cluster.enabled | quote }}
{{- end -}}
