{{/*
Names and labels in the `helm create` idiom: every object name comes from these helpers, so any
release name and namespace work and two releases never collide.
*/}}

{{/* The chart name, or nameOverride; 63 characters at most (DNS label). */}}
{{- define "inference-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: "<release>-<name>", or the release name alone when it already contains
the chart name. Truncated to 63 characters because names are DNS labels.
*/}}
{{- define "inference-operator.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "inference-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels: selector labels plus the ones that change between chart versions. */}}
{{- define "inference-operator.labels" -}}
helm.sh/chart: {{ include "inference-operator.chart" . }}
{{ include "inference-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: vllm-inference-framework
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels: never change for a release, so Deployment selectors stay valid on upgrade. */}}
{{- define "inference-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inference-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as: created by the chart, or an existing one. */}}
{{- define "inference-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inference-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}: global.imageRegistry wins over the
image's own registry (one switch for an air-gapped mirror); the tag defaults to the appVersion, so
nothing floats; a digest, when given, pins the exact image.
Call with (dict "image" .Values.image "root" $).
*/}}
{{- define "inference-operator.image" -}}
{{- $registry := .root.Values.global.imageRegistry | default .image.registry -}}
{{- $ref := .image.repository -}}
{{- if $registry }}
{{- $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref -}}
{{- end }}
{{- $ref = printf "%s:%s" $ref (.image.tag | default .root.Chart.AppVersion | toString) -}}
{{- if .image.digest }}
{{- $ref = printf "%s@%s" $ref .image.digest -}}
{{- end }}
{{- $ref -}}
{{- end }}

{{/* True (non-empty) when the operator watches the whole cluster rather than a namespace list. */}}
{{- define "inference-operator.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{ end -}}
{{- end }}

{{/*
The port of kopf's liveness endpoint (/healthz) inside the operator pod. The chart passes it to the
operator with --liveness, and the probes and Dockerfile.operator's EXPOSE use the same number
(tests/docker checks that).
*/}}
{{- define "inference-operator.healthPort" -}}
8080
{{- end }}

{{/*
The name of the kopf peering object(s) the replicas elect their leader through. It must equal the
operator's peering name (inference_operator.settings.OperatorSettings.peering_name; a chart test
checks it).
*/}}
{{- define "inference-operator.peeringName" -}}
inference-operator
{{- end }}

{{/* Fail early on value combinations that would deploy a broken operator. */}}
{{- define "inference-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: standalone replicas would all reconcile the same models" }}
{{- end }}
{{- end }}

{{/*
Names of cluster-scoped objects carry the release namespace too: releases of the same name in two
namespaces must not share a ClusterRole.
*/}}
{{- define "inference-operator.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "inference-operator.fullname" .) }}
{{- end }}

{{/*
The rules the operator needs in every namespace it serves: in a Role per watched namespace, or in the
ClusterRole when it watches all of them. Each rule names the code that needs it; nothing else is
granted (the RBAC test in tests/chart runs the operator under exactly these rules and fails on any 403).
*/}}
{{- define "inference-operator.namespacedRules" -}}
# InferenceModels: kopf lists and watches them and patches its finalizer and progress annotations onto
# them; Reconciler.reconcile reads each one (get) before a pass.
- apiGroups: [inference.vif.dev]
  resources: [inferencemodels]
  verbs: [get, list, watch, patch]
# Reconciler._write_status: one merge patch of the status subresource per pass.
- apiGroups: [inference.vif.dev]
  resources: [inferencemodels/status]
  verbs: [patch]
# Children carry a controller ownerReference with blockOwnerDeletion; clusters that enable the
# OwnerReferencesPermissionEnforcement admission plugin require this to set it.
- apiGroups: [inference.vif.dev]
  resources: [inferencemodels/finalizers]
  verbs: [update]
# The model's Deployment, Service and ConfigMap: read to diff (get), written by server-side apply
# (patch; an apply that creates the object is also authorized as create), and watched by kopf so hand
# edits are undone at once (list, watch). They are deleted by garbage collection through their
# ownerReferences, never by the operator.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch]
# Runtime pods: counted for status.replicas/readyReplicas and read for failure reasons (list), watched
# so status follows pod changes (watch). Download pods: their log's last progress line (pods/log get).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# Shared download Jobs of huggingFace/s3 sources with model.cache: created once (create, patch: server-side
# apply), read for their outcome (get), watched so models start when theirs succeeds (list, watch), and
# deleted with the cached revision no model uses any more (delete).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# The model's ServiceMonitor when prometheus-operator is installed: read to diff, applied (create,
# patch), and deleted when spec.monitoring.enabled is switched off (Reconciler._prune_servicemonitor).
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, create, patch, delete]
# kopf posts warning-level Kubernetes Events about the resources it handles; the reconciler posts the
# download's start, end and failure.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
Cluster-scoped rules kopf needs in every mode: it lists and watches CRDs to learn which resources
exist and to notice the InferenceModel or ServiceMonitor CRD appearing later.
*/}}
{{- define "inference-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}
