{{/*
The release's full name, used for every object the chart creates. Kubernetes names are
DNS labels, so it is cut at 63 characters.
*/}}
{{- define "canary-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Labels that pick the operator's pod: stable across upgrades, since a Deployment's selector
cannot change.
*/}}
{{- define "canary-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "canary-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "canary-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The ServiceAccount the operator runs as and the ClusterRoleBinding binds. An existing one
must be named: binding cluster-wide rights to a namespace's "default" account by accident
would hand them to every pod that does not ask for another.
*/}}
{{- define "canary-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "canary-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "canary-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator does with the API in a namespace it watches, and nothing more (the bench records every
call the operator makes over a whole rollout life; a test fails when these rules grant more or less).
*/}}
{{- define "canary-operator.namespacedRules" -}}
# The rollouts: Kopf watches them and patches its finalizer in; each tick reads one.
- apiGroups: ["canary.dev"]
  resources: ["canaryrollouts"]
  verbs: ["get", "list", "watch", "patch"]
# One status patch per tick.
- apiGroups: ["canary.dev"]
  resources: ["canaryrollouts/status"]
  verbs: ["patch"]
# The primary and canary Deployments it creates, scales and deletes; the target it claims and scales;
# all of them watched, for the cache every rollout reads its Deployments from.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The Services in front of primary and canary.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
# The Secrets a CanaryRollout names (analysis.prometheus.secretRef; the webhooks' and notifications'
# headersFrom and urlFrom), read in the rollout's namespace when used (never listed or watched).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on the rollouts: the story of every step, verdict and rollback.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- /* Traffic routers, only those enabled (trafficRouters): the user's HTTPRoute or VirtualService is
changed in place and given back on deletion (never created or deleted); a DestinationRule's subsets
are only read; the nginx router creates a canary Ingress beside the user's, which it only reads. */}}
{{- if .Values.autoscalers }}
# The primary's HorizontalPodAutoscaler, copied from the one autoscalerRef names.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch"]
{{- end }}
{{- if has "gatewayAPI" .Values.trafficRouters }}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
{{- end }}
{{- if has "istio" .Values.trafficRouters }}
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "patch"]
- apiGroups: ["networking.istio.io"]
  resources: ["destinationrules"]
  verbs: ["get"]
{{- end }}
{{- if has "nginx" .Values.trafficRouters }}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
{{- end }}

{{/*
Cluster-scoped and read-only: Kopf notices when the CanaryRollout CRD appears or changes and, when it
watches a list of namespaces, when those namespaces come and go.
*/}}
{{- define "canary-operator.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- if and .Values.peering.enabled (not .Values.watchNamespaces) }}
# Peering: each replica renews its own record in the ClusterKopfPeering and watches the others'.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
