{{- /* Values the schema cannot check: shard ids must be unique and must not be the default shard's label. */ -}}
{{- define "helmops.validate" -}}
{{- $seen := dict -}}
{{- range .Values.shards -}}
{{- if eq .id "default" -}}
{{- fail "shards: id \"default\" is reserved for the unsharded Deployment; choose another id" -}}
{{- end -}}
{{- if hasKey $seen .id -}}
{{- fail (printf "shards: id %q is listed twice; shard ids must be unique" .id) -}}
{{- end -}}
{{- $_ := set $seen .id true -}}
{{- end -}}
{{- end -}}
