{{/*
Names, labels and the rendered config. Every helper here takes the portcullis values explicitly
(a dict with "root", the chart's or the including chart's top context, and "values", the
portcullis values), so the sidecar templates give the same names when a parent chart includes
them with its own context.
*/}}

{{- define "portcullis.name" -}}
{{- default "portcullis" .values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name; "portcullis" rather than .Chart.Name so a parent chart gets the same. */}}
{{- define "portcullis.fullname" -}}
{{- if .values.fullnameOverride -}}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "portcullis.name" . -}}
{{- if contains $name .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: portcullis
{{- end -}}

{{- define "portcullis.configMapName" -}}
{{- .values.existingConfigMap | default (printf "%s-config" (include "portcullis.fullname" .)) -}}
{{- end -}}

{{- define "portcullis.image" -}}
{{- if .values.image.digest -}}
{{- printf "%s@%s" .values.image.repository .values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .values.image.repository .values.image.tag -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.terminationGracePeriodSeconds" -}}
{{- $grace := int .values.shutdownGraceSeconds -}}
{{- $term := .values.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $term -}}
{{- add $grace 5 -}}
{{- else if le (int $term) $grace -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above shutdownGraceSeconds (%d): Kubernetes would kill the gateway before it drains" (int $term) $grace) -}}
{{- else -}}
{{- int $term -}}
{{- end -}}
{{- end -}}

{{/*
config.yaml: the policy from values with the listeners and the shutdown grace the chart owns.
*/}}
{{- define "portcullis.config" -}}
{{- if not .values.config -}}
{{- fail "config is empty: set the gateway's policy (upstreams, issuers, routes) in config:; the chart's examples/policy.yaml is one to start from" -}}
{{- end -}}
{{- $cfg := deepCopy (.values.config | default dict) -}}
{{- range $key := list "listen" "admin_listen" "decision_listen" -}}
{{- if hasKey $cfg $key -}}
{{- fail (printf "config.%s is set by the chart from ports.*: remove it from config" $key) -}}
{{- end -}}
{{- end -}}
{{- $server := deepCopy (get $cfg "server" | default dict) -}}
{{- if hasKey $server "shutdown_grace" -}}
{{- fail "config.server.shutdown_grace is set by the chart: use shutdownGraceSeconds" -}}
{{- end -}}
{{- if hasKey $server "shutdown_delay" -}}
{{- fail "config.server.shutdown_delay is set by the chart: use shutdownDelaySeconds" -}}
{{- end -}}
{{- $delay := int (.values.shutdownDelaySeconds | default 0) -}}
{{- if ge $delay (int .values.shutdownGraceSeconds) -}}
{{- fail (printf "shutdownDelaySeconds (%d) must be below shutdownGraceSeconds (%d): the delay is spent inside the drain budget" $delay (int .values.shutdownGraceSeconds)) -}}
{{- end -}}
{{- $_ := set $server "shutdown_grace" (printf "%ds" (int .values.shutdownGraceSeconds)) -}}
{{- $_ := set $server "shutdown_delay" (printf "%ds" $delay) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .values.ports.proxy)) -}}
{{- $_ := set $cfg "admin_listen" (printf "0.0.0.0:%d" (int .values.ports.admin)) -}}
{{- if .values.ports.decision -}}
{{- $_ := set $cfg "decision_listen" (printf "0.0.0.0:%d" (int .values.ports.decision)) -}}
{{- end -}}
{{- if hasKey $cfg "tracing" -}}
{{- fail "config.tracing is set by the chart: use tracing.otlpEndpoint, tracing.sampleRatio and tracing.serviceName" -}}
{{- end -}}
{{- $tracing := .values.tracing | default dict -}}
{{- if $tracing.otlpEndpoint -}}
{{- $_ := set $cfg "tracing" (dict "otlp_endpoint" $tracing.otlpEndpoint "sample_ratio" (float64 $tracing.sampleRatio) "service_name" (default "portcullis" $tracing.serviceName)) -}}
{{- end -}}
{{- if hasKey $cfg "tls" -}}
{{- fail "config.tls is set by the chart: use tls.enabled, tls.secretName, tls.clientCa and tls.clientSubjectHeader" -}}
{{- end -}}
{{- $tls := include "portcullis.tls" . | fromYaml -}}
{{- if $tls -}}
{{- $_ := set $cfg "tls" $tls -}}
{{- end -}}
{{- $upstreamCaDir := printf "%s/" (include "portcullis.upstreamCaMountPath" .) -}}
{{- if not (include "portcullis.caSource" (dict "key" "upstreamCa" "src" .values.upstreamCa)) -}}
{{- range $name, $upstream := (get $cfg "upstreams" | default dict) -}}
{{- if and (kindIs "map" $upstream) (hasPrefix $upstreamCaDir (toString (get $upstream "ca_file"))) -}}
{{- fail (printf "config.upstreams.%s.ca_file is under %s, which is mounted only with upstreamCa.secretName or upstreamCa.configMapName" $name $upstreamCaDir) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
TLS material, each mounted as a whole directory (never subPath: kubelet then swaps a renewed
Secret in place through the `..data` symlink, and the gateway reloads the certificate).
*/}}
{{- define "portcullis.tlsMountPath" -}}/etc/portcullis-tls{{- end -}}
{{- define "portcullis.clientCaMountPath" -}}/etc/portcullis-client-ca{{- end -}}
{{- define "portcullis.upstreamCaMountPath" -}}/etc/portcullis-upstream-ca{{- end -}}

{{/*
Where a CA bundle comes from: "secret", "configMap" or "" (none). Takes a dict: "key", the values
key for messages, and "src", its {secretName, configMapName}. Fails when both are set.
*/}}
{{- define "portcullis.caSource" -}}
{{- $src := .src | default dict -}}
{{- if and $src.secretName $src.configMapName -}}
{{- fail (printf "%s: set secretName or configMapName, not both" .key) -}}
{{- else if $src.secretName -}}
secret
{{- else if $src.configMapName -}}
configMap
{{- end -}}
{{- end -}}

{{/*
The config's `tls:` block (YAML) from the tls values, or nothing when tls.enabled is off. Also
refuses the combinations the gateway would refuse or that would mean nothing.
*/}}
{{- define "portcullis.tls" -}}
{{- $tls := .values.tls | default dict -}}
{{- $clientCa := include "portcullis.caSource" (dict "key" "tls.clientCa" "src" $tls.clientCa) -}}
{{- if $tls.enabled -}}
{{- if not $tls.secretName -}}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret (tls.crt, tls.key)" -}}
{{- end -}}
{{- if and $tls.clientSubjectHeader (not $clientCa) -}}
{{- fail "tls.clientSubjectHeader needs tls.clientCa: the gateway sets it only from a verified client certificate" -}}
{{- end -}}
cert_file: {{ include "portcullis.tlsMountPath" . }}/tls.crt
key_file: {{ include "portcullis.tlsMountPath" . }}/tls.key
{{- if $clientCa }}
client_ca_file: {{ include "portcullis.clientCaMountPath" . }}/ca.crt
{{- end }}
{{- with $tls.clientSubjectHeader }}
client_subject_header: {{ . | quote }}
{{- end }}
{{- else if or $clientCa $tls.clientSubjectHeader -}}
{{- fail "tls.clientCa and tls.clientSubjectHeader need tls.enabled" -}}
{{- end -}}
{{- end -}}

{{/* The proxy Service's port: service.port, or 443 with TLS and 80 without. */}}
{{- define "portcullis.servicePort" -}}
{{- if kindIs "invalid" .values.service.port -}}
{{- ternary 443 80 (include "portcullis.tlsEnabled" . | eq "true") -}}
{{- else -}}
{{- int .values.service.port -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.tlsEnabled" -}}
{{- ((.values.tls | default dict).enabled | default false) -}}
{{- end -}}

{{/* Pod annotation that rolls the pods on a config change, when rollOnConfigChange is on. */}}
{{- define "portcullis.checksumAnnotation" -}}
{{- if .values.rollOnConfigChange -}}
checksum/portcullis-config: {{ include "portcullis.config" . | sha256sum }}
{{- end -}}
{{- end -}}

{{- define "portcullis.serviceAccountName" -}}
{{- if .values.serviceAccount.create -}}
{{- .values.serviceAccount.name | default (include "portcullis.fullname" .) -}}
{{- else -}}
{{- .values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}
