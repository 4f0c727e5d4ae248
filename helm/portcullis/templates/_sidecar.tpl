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

{{/* One container (a list item): the gateway, its probes, security context and config mount. */}}
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
    {{- with .values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The pod volumes the container needs (list items). */}}
{{- define "portcullis.volumes" -}}
- name: portcullis-config
  configMap:
    name: {{ include "portcullis.configMapName" . }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
