{{/* Image servers, as the official chart writes them. */}}
{{- define "mesh.image-server" -}}
{{- .Values.registry.server }}
{{- end }}
{{- define "hook.image-server" -}}
{{- if not .Values.registry.disablePublicImages }}bitnami{{ else }}{{ .Values.registry.server }}{{ end }}
{{- end }}
{{- define "spire.image-server" -}}
{{- if not .Values.registry.disablePublicImages }}gcr.io/spiffe-io{{ else }}{{ .Values.registry.server }}{{ end }}
{{- end }}
{{- define "nats.image-server" -}}
{{- if not .Values.registry.disablePublicImages }}{{ else }}{{ .Values.registry.server }}/{{ end }}
{{- end }}

{{- define "registry-key-name" -}}
nginx-mesh-registry-key
{{- end }}

{{- define "docker-config-json" -}}
{{- if (and (.Values.registry.username) (.Values.registry.password)) }}
{"auths": {{ "{" }}{{ quote .Values.registry.server }}: {"username": {{ quote .Values.registry.username }}, "password": {{ quote .Values.registry.password }}}}}
{{- end }}
{{- end }}
