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
{{- /* Leader election: more than one pod per Deployment needs it, and the controller must support it. */ -}}
{{- $replicas := list (int .Values.replicas) -}}
{{- range .Values.shards -}}
{{- $replicas = append $replicas (int (default 1 .replicas)) -}}
{{- end -}}
{{- $supported := include "helmops.controllerHasLeaderElection" . | eq "true" -}}
{{- range $replicas -}}
{{- if and (gt . 1) (not $supported) -}}
{{- fail "replicas > 1 needs leader election (--leader-elect), which this version of helmops run does not support yet; use replicas: 1 (shards spread the load)" -}}
{{- end -}}
{{- if and (gt . 1) (eq (toString $.Values.leaderElection.enabled) "false") -}}
{{- fail "replicas > 1 with leaderElection.enabled=false would run several controllers on the same HelmApps; enable leader election or use replicas: 1" -}}
{{- end -}}
{{- end -}}
{{- if and (eq (toString .Values.leaderElection.enabled) "true") (not $supported) -}}
{{- fail "leaderElection.enabled=true: this version of helmops run has no --leader-elect yet; leave it empty" -}}
{{- end -}}
{{- end -}}

{{- /*
Whether `helmops run` accepts --leader-elect. Flip to "true" once the controller implements it; the
Deployment template then passes --leader-elect to multi-replica Deployments (or when enabled explicitly).
*/ -}}
{{- define "helmops.controllerHasLeaderElection" -}}
true
{{- end -}}
