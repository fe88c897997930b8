{{/* The chart's name, or nameOverride. */}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release name, with the chart's name added
unless the release name holds it already. */}}
{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Where the Secret files are mounted in the gatehouse container. */}}
{{- define "gatehouse.secretDir" -}}/run/secrets/gatehouse{{- end }}

{{/* The container port gatehouse listens on. */}}
{{- define "gatehouse.port" -}}4180{{- end }}

{{/* The secrets the chart knows (names under .Values.secrets), in order. */}}
{{- define "gatehouse.secretKeys" -}}
{{- list "cookie" "clientSecret" "assertionKey" "redisURL" | toJson }}
{{- end }}

{{/* The file name of a secret in the container, and its key in the Secret
the chart creates: fixed, so that two existing Secrets using the same key
name cannot collide. */}}
{{- define "gatehouse.secretFile" -}}
{{- index (dict "cookie" "cookie-secret" "clientSecret" "client-secret" "assertionKey" "assertion-key.pem" "redisURL" "redis-url") . }}
{{- end }}

{{/* Whether a secret (by its name under .Values.secrets) is given, from
an existing Secret or as a value. */}}
{{- define "gatehouse.hasSecret" -}}
{{- $s := index .root.Values.secrets .name }}
{{- if or $s.existingSecret $s.value }}true{{ end }}
{{- end }}

{{/* The file path of a secret in the container. */}}
{{- define "gatehouse.secretPath" -}}
{{- printf "%s/%s" (include "gatehouse.secretDir" .root) (include "gatehouse.secretFile" .name) }}
{{- end }}

{{/* Whether the chart creates a Secret: some secret is given as a value
and not from an existing Secret. */}}
{{- define "gatehouse.createsSecret" -}}
{{- range $name := include "gatehouse.secretKeys" $ | fromJsonArray }}
{{- $s := index $.Values.secrets $name }}
{{- if and $s.value (not $s.existingSecret) }}true{{ end }}
{{- end }}
{{- end }}

{{/* The session store the configuration chooses. */}}
{{- define "gatehouse.store" -}}
{{- $session := .Values.config.session | default dict }}
{{- $session.store | default "memory" }}
{{- end }}

{{/*
gatehouse.validate fails the render, with what to change, on values that
would deploy something broken or unsafe. Every template includes it, so
the first one rendered reports the problem.
*/}}
{{- define "gatehouse.validate" -}}
{{- $v := .Values }}
{{- $c := $v.config | default dict }}
{{- if not (has $v.mode (list "standalone" "sidecar")) }}
{{- fail (printf "mode: %q is neither standalone nor sidecar" $v.mode) }}
{{- end }}
{{- if not (kindIs "map" $c) }}
{{- fail "config: must be a mapping holding gatehouse's configuration (gatehouse.yaml)" }}
{{- end }}
{{- range $key := list "external_url" "allow" }}
{{- if not (index $c $key) }}
{{- fail (printf "config.%s: required; see the comments on config in the chart's values.yaml" $key) }}
{{- end }}
{{- end }}
{{- range $key := list "issuer" "client_id" }}
{{- if not (index ($c.oidc | default dict) $key) }}
{{- fail (printf "config.oidc.%s: required; see the comments on config in the chart's values.yaml" $key) }}
{{- end }}
{{- end }}
{{- if and (gt (int $v.replicaCount) 1) (ne (include "gatehouse.store" .) "redis") }}
{{- fail (printf "replicaCount: %d replicas need config.session.store: redis (got %q): with the memory store each pod knows only its own sessions, so a user signed in on one pod is sent to log in again by the next. Set config.session.store: redis and secrets.redisURL, or replicaCount: 1" (int $v.replicaCount) (include "gatehouse.store" .)) }}
{{- end }}
{{- range $key := list "listen" }}
{{- if hasKey $c $key }}
{{- fail (printf "config.%s: the chart sets it (gatehouse listens on :%s, the container port); remove it from config" $key (include "gatehouse.port" $)) }}
{{- end }}
{{- end }}
{{- $admin := $c.admin | default dict }}
{{- if hasKey $admin "listen" }}
{{- fail "config.admin.listen: the chart sets it from metrics.enabled and metrics.port; remove it from config" }}
{{- end }}
{{- if hasKey $admin "token_file" }}
{{- fail "config.admin.token_file: session administration is not supported by this chart (it would serve on the metrics port, on the pod's IP); remove it from config" }}
{{- end }}
{{- $oidc := $c.oidc | default dict }}
{{- $cookie := $c.cookie | default dict }}
{{- $assertion := $c.assertion | default dict }}
{{- $session := $c.session | default dict }}
{{- $redis := $session.redis | default dict }}
{{- range $pair := list (list $oidc "oidc" "client_secret" "clientSecret") (list $cookie "cookie" "secret" "cookie") (list $oidc "oidc" "client_secret_file" "clientSecret") (list $cookie "cookie" "secret_file" "cookie") (list $assertion "assertion" "key_file" "assertionKey") (list $redis "session.redis" "url_file" "redisURL") }}
{{- if hasKey (index $pair 0) (index $pair 2) }}
{{- fail (printf "config.%s.%s: secrets do not belong in config (a ConfigMap, and Helm's release history); set secrets.%s.existingSecret (a Secret you created) or secrets.%s.value, and the chart mounts it and sets the file path" (index $pair 1) (index $pair 2) (index $pair 3) (index $pair 3)) }}
{{- end }}
{{- end }}
{{- if and $redis.url (contains "@" (toString $redis.url)) }}
{{- fail "config.session.redis.url: this URL carries credentials; put it in a Secret instead: secrets.redisURL.existingSecret (or secrets.redisURL.value), and remove config.session.redis.url" }}
{{- end }}
{{- range $name := list "cookie" "clientSecret" }}
{{- if not (include "gatehouse.hasSecret" (dict "root" $ "name" $name)) }}
{{- fail (printf "secrets.%s: required; set secrets.%s.existingSecret to the name of a Secret holding the key %q (kubectl create secret generic ...), or secrets.%s.value" $name $name (index $v.secrets $name).key $name) }}
{{- end }}
{{- end }}
{{- if and (eq (include "gatehouse.store" .) "redis") (not $redis.url) (not (include "gatehouse.hasSecret" (dict "root" . "name" "redisURL"))) }}
{{- fail "secrets.redisURL: config.session.store is redis but no URL is given; set secrets.redisURL.existingSecret to a Secret holding redis://:PASSWORD@host:6379/0 under secrets.redisURL.key, or secrets.redisURL.value" }}
{{- end }}
{{- if and (gt (int $v.replicaCount) 1) (not (include "gatehouse.hasSecret" (dict "root" . "name" "assertionKey"))) }}
{{- fail (printf "secrets.assertionKey: %d replicas need one assertion signing key, or each pod signs X-Gatehouse-Assertion with a key of its own; set secrets.assertionKey.existingSecret (a PEM key: openssl ecparam -name prime256v1 -genkey -noout) or secrets.assertionKey.value" (int $v.replicaCount)) }}
{{- end }}
{{- if eq $v.mode "sidecar" }}
{{- if hasKey $c "upstream" }}
{{- fail "config.upstream: in sidecar mode the chart sets it to http://127.0.0.1:<app.port>, the app in the same pod; remove it from config and set app.port" }}
{{- end }}
{{- if not $v.app.image }}
{{- fail "app.image: required in sidecar mode: the image of your app, which the chart runs in gatehouse's pod" }}
{{- end }}
{{- else if not $c.upstream }}
{{- if not $c.routes }}
{{- fail "config.upstream: required in standalone mode: the URL of your app's Service, e.g. http://wiki:8080 (or give config.routes)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The configuration gatehouse reads: config, with the keys the chart
owns set. */}}
{{- define "gatehouse.config" -}}
{{- $c := deepCopy (.Values.config | default dict) }}
{{- $_ := set $c "listen" (printf ":%s" (include "gatehouse.port" .)) }}
{{- if eq .Values.mode "sidecar" }}
{{- $_ := set $c "upstream" (printf "http://127.0.0.1:%d" (int .Values.app.port)) }}
{{- end }}
{{- $oidc := $c.oidc | default dict }}
{{- $_ := set $oidc "client_secret_file" (include "gatehouse.secretPath" (dict "root" . "name" "clientSecret")) }}
{{- $_ := set $c "oidc" $oidc }}
{{- $cookie := $c.cookie | default dict }}
{{- $_ := set $cookie "secret_file" (include "gatehouse.secretPath" (dict "root" . "name" "cookie")) }}
{{- $_ := set $c "cookie" $cookie }}
{{- if include "gatehouse.hasSecret" (dict "root" . "name" "assertionKey") }}
{{- $assertion := $c.assertion | default dict }}
{{- $_ := set $assertion "key_file" (include "gatehouse.secretPath" (dict "root" . "name" "assertionKey")) }}
{{- $_ := set $c "assertion" $assertion }}
{{- end }}
{{- if include "gatehouse.hasSecret" (dict "root" . "name" "redisURL") }}
{{- $session := $c.session | default dict }}
{{- $redis := $session.redis | default dict }}
{{- $_ := set $redis "url_file" (include "gatehouse.secretPath" (dict "root" . "name" "redisURL")) }}
{{- $_ := set $session "redis" $redis }}
{{- $_ := set $c "session" $session }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $admin := $c.admin | default dict }}
{{- $_ := set $admin "listen" (printf ":%d" (int .Values.metrics.port)) }}
{{- $_ := set $c "admin" $admin }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/*
GOMEMLIMIT: goMemLimit, or 90% of resources.limits.memory in MiB (the
garbage collector works harder before the kernel's OOM killer steps in).
Empty without a memory limit.
*/}}
{{- define "gatehouse.goMemLimit" -}}
{{- if .Values.goMemLimit }}
{{- .Values.goMemLimit }}
{{- else }}
{{- $limits := (.Values.resources | default dict).limits | default dict }}
{{- with $limits.memory }}
{{- $s := toString . }}
{{- if kindIs "float64" . }}
{{- /* A number in a values file arrives as a float. */}}
{{- $s = int64 . | toString }}
{{- end }}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "" 1 }}
{{- $num := regexFind "^[0-9]+" $s }}
{{- $unit := trimPrefix $num $s }}
{{- if or (not $num) (not (hasKey $units $unit)) }}
{{- fail (printf "resources.limits.memory: %q is not a whole number with one of the units Ki, Mi, Gi, Ti, k, M, G, T; or set goMemLimit yourself" $s) }}
{{- end }}
{{- $mib := div (mul (int64 $num) (index $units $unit) 9) (mul 10 1048576) }}
{{- if lt $mib 1 }}
{{- fail (printf "resources.limits.memory: %q is too small for gatehouse" $s) }}
{{- end }}
{{- printf "%dMiB" $mib }}
{{- end }}
{{- end }}
{{- end }}
