{{/*
The portcullis container and its volume, as named templates. Standalone mode uses them in its
Deployment; in sidecar mode your own chart includes them in its pod spec (README.md, "Sidecar
mode"), with this chart as a dependency so its ConfigMap is rendered beside your pod:

  spec:
    terminationGracePeriodSeconds: {{ include "portcullis.terminationGracePeriodSeconds" (dict "root" $ "values" .Values.portcullis) }}
    containers:
      - name: app            # listens on 127.0.0.1:3000 only; the Service targets portcullis
        ...
      {{- include "portcullis.container" (dict "root" $ "values" .Values.portcullis) | nindent 6 }}
    volumes:
      {{- include "portcullis.volumes" (dict "root" $ "values" .Values.portcullis) | nindent 6 }}

and, to roll the pods on a config change (rollOnConfigChange: true), in the pod's annotations:

      {{- include "portcullis.checksumAnnotation" (dict "root" $ "values" .Values.portcullis) | nindent 8 }}

Each takes a dict: "root", the top context ($), and "values", the portcullis values.
*/}}

{{/* One container (a list item): the gateway, its probes, security context, config mount and,
with tls.enabled / upstreamCa, the TLS mounts. */}}
{{- define "portcullis.container" -}}
- name: portcullis
  image: {{ include "portcullis.image" . | quote }}
  imagePullPolicy: {{ .values.image.pullPolicy }}
  args: ["run", "-c", "/etc/portcullis/config.yaml"]
  ports:
    - name: portcullis
      containerPort: {{ .values.ports.proxy }}
      protocol: TCP
    - name: portcullis-adm
      containerPort: {{ .values.ports.admin }}
      protocol: TCP
    {{- if .values.ports.decision }}
    - name: portcullis-dec
      containerPort: {{ .values.ports.decision }}
      protocol: TCP
    {{- end }}
  {{- if or .values.logLevel .values.extraEnv }}
  env:
    {{- if .values.logLevel }}
    - name: RUST_LOG
      value: {{ .values.logLevel | quote }}
    {{- end }}
    {{- with .values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: portcullis-adm
    {{- toYaml .values.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: portcullis-adm
    {{- toYaml .values.readinessProbe | nindent 4 }}
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    # The whole directory, never subPath: Kubernetes then swaps the files in place (the
    # `..data` symlink) when the ConfigMap changes.
    - name: portcullis-config
      mountPath: /etc/portcullis
      readOnly: true
    {{- if eq (include "portcullis.tlsEnabled" .) "true" }}
    # The TLS Secret as a directory too: a renewed certificate (cert-manager) reaches the pod
    # through the same `..data` swap, and the gateway serves it without a restart.
    - name: portcullis-tls
      mountPath: {{ include "portcullis.tlsMountPath" . }}
      readOnly: true
    {{- if include "portcullis.caSource" (dict "key" "tls.clientCa" "src" .values.tls.clientCa) }}
    - name: portcullis-client-ca
      mountPath: {{ include "portcullis.clientCaMountPath" . }}
      readOnly: true
    {{- end }}
    {{- end }}
    {{- if include "portcullis.caSource" (dict "key" "upstreamCa" "src" .values.upstreamCa) }}
    - name: portcullis-upstream-ca
      mountPath: {{ include "portcullis.upstreamCaMountPath" . }}
      readOnly: true
    {{- end }}
    {{- with .values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The pod volumes the container needs (list items): the ConfigMap, the TLS Secret and CA
bundles when set, and extraVolumes. */}}
{{- define "portcullis.volumes" -}}
- name: portcullis-config
  configMap:
    name: {{ include "portcullis.configMapName" . }}
{{- $tls := include "portcullis.tls" . }}{{/* fails the render on a bad combination */}}
{{- if eq (include "portcullis.tlsEnabled" .) "true" }}
- name: portcullis-tls
  secret:
    secretName: {{ .values.tls.secretName }}
{{- $clientCa := include "portcullis.caSource" (dict "key" "tls.clientCa" "src" .values.tls.clientCa) }}
{{- /* The one key, as ca.crt: another key is another pod spec, so it rolls the pods (the
gateway reads client_ca_file only at start). */}}
{{- if eq $clientCa "secret" }}
- name: portcullis-client-ca
  secret:
    secretName: {{ .values.tls.clientCa.secretName }}
    items:
      - key: {{ .values.tls.clientCa.key | default "ca.crt" }}
        path: ca.crt
{{- else if eq $clientCa "configMap" }}
- name: portcullis-client-ca
  configMap:
    name: {{ .values.tls.clientCa.configMapName }}
    items:
      - key: {{ .values.tls.clientCa.key | default "ca.crt" }}
        path: ca.crt
{{- end }}
{{- end }}
{{- $upstreamCa := include "portcullis.caSource" (dict "key" "upstreamCa" "src" .values.upstreamCa) }}
{{- if eq $upstreamCa "secret" }}
- name: portcullis-upstream-ca
  secret:
    secretName: {{ .values.upstreamCa.secretName }}
{{- else if eq $upstreamCa "configMap" }}
- name: portcullis-upstream-ca
  configMap:
    name: {{ .values.upstreamCa.configMapName }}
{{- end }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
