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
{{- $cfg := deepCopy (.values.config | default dict) -}}
{{- range $key := list "listen" "admin_listen" -}}
{{- if hasKey $cfg $key -}}
{{- fail (printf "config.%s is set by the chart from ports.*: remove it from config" $key) -}}
{{- end -}}
{{- end -}}
{{- $server := deepCopy (get $cfg "server" | default dict) -}}
{{- if hasKey $server "shutdown_grace" -}}
{{- fail "config.server.shutdown_grace is set by the chart: use shutdownGraceSeconds" -}}
{{- end -}}
{{- $_ := set $server "shutdown_grace" (printf "%ds" (int .values.shutdownGraceSeconds)) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .values.ports.proxy)) -}}
{{- $_ := set $cfg "admin_listen" (printf "0.0.0.0:%d" (int .values.ports.admin)) -}}
{{- toYaml $cfg -}}
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
