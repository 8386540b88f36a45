{{/*
Shared pieces of the kata-deploy chart. Everything two objects have in
common is defined here once: the installer DaemonSet (both runtime
families), the host mounts, the installer's settings. A new host mount or a
probe change is one edit here.
*/}}

{{/*
kata-deploy.name: an object name, with "-<multiInstallSuffix>" when set.
Call with (list $ "base-name").
*/}}
{{- define "kata-deploy.name" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- with $root.Values.multiInstallSuffix }}{{ printf "%s-%s" $name . }}{{ else }}{{ $name }}{{ end -}}
{{- end }}

{{/*
kata-deploy.labels: the labels (and selectors) of every object; call with
(list $ "component"). A second install is told apart by its suffix, so
that its DaemonSets never select the first install's pods.
*/}}
{{- define "kata-deploy.labels" -}}
app.kubernetes.io/name: kata-deploy
app.kubernetes.io/component: {{ index . 1 }}
{{- with (index . 0).Values.multiInstallSuffix }}
app.kubernetes.io/instance: {{ . }}
{{- end }}
{{- end }}

{{/* kata-deploy.image: reference@digest, else reference:tag. */}}
{{- define "kata-deploy.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.reference }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.reference }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
kata-deploy.shimCatalogue: every shim Kata ships, in runtime.Shims() order
(deploy/helm's tests keep the two lists equal). KATA_SHIMS and the
RuntimeClasses follow this order.
*/}}
{{- define "kata-deploy.shimCatalogue" -}}
qemu clh fc qemu-tdx qemu-snp qemu-se qemu-coco-dev qemu-nvidia-gpu qemu-nvidia-gpu-snp qemu-nvidia-gpu-tdx stratovirt dragonball cloud-hypervisor qemu-runtime-rs qemu-se-runtime-rs qemu-coco-dev-runtime-rs
{{- end }}

{{/* kata-deploy.enabledShims: the enabled shims, space-separated, in catalogue order. */}}
{{- define "kata-deploy.enabledShims" -}}
{{- $out := list -}}
{{- range splitList " " (include "kata-deploy.shimCatalogue" .) -}}
{{- $shim := get $.Values.shims . -}}
{{- if and $shim $shim.enabled -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{ join " " $out }}
{{- end }}

{{/*
kata-deploy.installerConfig: every value the installer reads, as JSON. The
installers' environment is written from it, and its checksum is on their
pod template, so changing any of these values rolls the installer pods.
Values that contradict each other fail the render here.
*/}}
{{- define "kata-deploy.installerConfig" -}}
{{- $v := .Values -}}
{{- $shims := splitList " " (include "kata-deploy.enabledShims" .) | compact -}}
{{- if not $shims -}}
{{- fail "shims: enable at least one shim (shims.<name>.enabled: true)" -}}
{{- end -}}
{{- if not (has $v.defaultShim $shims) -}}
{{- fail (printf "defaultShim: %q is not an enabled shim (enabled: %s)" $v.defaultShim (join ", " $shims)) -}}
{{- end -}}
{{- $annotations := list -}}
{{- /* value -> the shims that set it, to name them when they disagree */ -}}
{{- $httpsProxy := dict -}}
{{- $noProxy := dict -}}
{{- range $name := $shims -}}
{{- $s := get $v.shims $name -}}
{{- with $s.allowedHypervisorAnnotations -}}
{{- $annotations = append $annotations (printf "%s=%s" $name (join ";" .)) -}}
{{- end -}}
{{- $agent := $s.agent | default dict -}}
{{- with $agent.httpsProxy }}{{ $_ := set $httpsProxy . (append (get $httpsProxy . | default list) (printf "shims.%s.agent.httpsProxy=%q" $name .)) }}{{ end -}}
{{- with $agent.noProxy }}{{ $_ := set $noProxy . (append (get $noProxy . | default list) (printf "shims.%s.agent.noProxy=%q" $name .)) }}{{ end -}}
{{- end -}}
{{- if gt (len $httpsProxy) 1 -}}
{{- fail (printf "shims.<name>.agent.httpsProxy: the installer writes one proxy for every shim, but the enabled shims set %d different ones: %s; set the same value (or none) on each" (len $httpsProxy) (include "kata-deploy.settings" $httpsProxy)) -}}
{{- end -}}
{{- if gt (len $noProxy) 1 -}}
{{- fail (printf "shims.<name>.agent.noProxy: the installer writes one setting for every shim, but the enabled shims set %d different ones: %s; set the same value (or none) on each" (len $noProxy) (include "kata-deploy.settings" $noProxy)) -}}
{{- end -}}
{{- dict "shims" (join "," $shims) "defaultShim" $v.defaultShim "mode" $v.mode "debug" $v.debug "prefix" (clean $v.installPrefix) "suffix" $v.multiInstallSuffix "labelDomain" $v.labelDomain "hypervisorAnnotations" (join "," $annotations) "agentHttpsProxy" (keys $httpsProxy | first | default "") "agentNoProxy" (keys $noProxy | first | default "") | toJson -}}
{{- end }}

{{/*
kata-deploy.settings: a dict of value -> list of "key=value" settings, as
one sorted, comma-separated list (for errors that name every key at fault).
*/}}
{{- define "kata-deploy.settings" -}}
{{- $out := list -}}
{{- range $k := keys . | sortAlpha -}}
{{- $out = concat $out (get $ $k) -}}
{{- end -}}
{{- join ", " $out -}}
{{- end }}

{{/*
kata-deploy.labelDomainEnv: KATA_LABEL_DOMAIN, only when it is not the
binaries' default.
*/}}
{{- define "kata-deploy.labelDomainEnv" -}}
{{- if ne .Values.labelDomain "kata-containers.io" -}}
- name: KATA_LABEL_DOMAIN
  value: {{ .Values.labelDomain | quote }}
{{- end -}}
{{- end }}

{{/*
kata-deploy.installerEnv: the installer's environment. Call with
(dict "root" $ "runtime" "containerd"|"crio"). Optional settings appear only
when they differ from the installer's defaults.
*/}}
{{- define "kata-deploy.installerEnv" -}}
{{- $root := .root -}}
{{- $c := include "kata-deploy.installerConfig" $root | fromJson -}}
- name: KATA_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: KATA_HOST_ROOT
  value: /host
{{- if eq .runtime "crio" }}
- name: KATA_RUNTIME
  value: crio
{{- else }}
# auto: plain containerd, k3s, k3s-agent, rke2-server, rke2-agent, k0s
# or microk8s, detected from the unit files mounted below.
- name: KATA_RUNTIME
  value: auto
{{- end }}
- name: KATA_PAYLOAD
  value: /opt/kata-artifacts
- name: KATA_MODE
  value: {{ $c.mode }}
# One handler per shim; the RuntimeClasses are rendered from the same
# list (deploy/manifests_test.go checks that they agree).
- name: KATA_SHIMS
  value: {{ $c.shims }}
- name: KATA_DEFAULT_SHIM
  value: {{ $c.defaultShim }}
{{- if ne $c.prefix "/opt" }}
- name: KATA_PREFIX
  value: {{ $c.prefix | quote }}
{{- end }}
{{- with $c.suffix }}
- name: KATA_SUFFIX
  value: {{ . | quote }}
{{- end }}
{{- if $c.debug }}
- name: KATA_DEBUG
  value: "true"
{{- end }}
{{- with $c.hypervisorAnnotations }}
- name: KATA_HYPERVISOR_ANNOTATIONS
  value: {{ . | quote }}
{{- end }}
{{- with $c.agentHttpsProxy }}
- name: KATA_AGENT_HTTPS_PROXY
  value: {{ . | quote }}
{{- end }}
{{- with $c.agentNoProxy }}
- name: KATA_AGENT_NO_PROXY
  value: {{ . | quote }}
{{- end }}
{{- with include "kata-deploy.labelDomainEnv" $root }}
{{ . }}
{{- end }}
# Its own DaemonSet: on SIGTERM, if the DaemonSet still targets
# this node it is a rolling update and nothing is undone.
- name: KATA_DAEMONSET
  value: {{ $root.Release.Namespace }}/{{ include "kata-deploy.name" (list $root (printf "kata-deploy-%s" .runtime)) }}
- name: KATA_HEALTH_ADDR
  value: ":8091"
{{- end }}

{{/*
kata-deploy.systemdMounts / systemdVolumes: systemd's private socket and the
unit directories, read-only, for the installers and the cleanup alike.
*/}}
{{- define "kata-deploy.systemdMounts" -}}
- name: host-systemd-run
  mountPath: /host/run/systemd
  readOnly: true
- name: host-units-etc
  mountPath: /host/etc/systemd/system
  readOnly: true
- name: host-units-lib
  mountPath: /host/lib/systemd/system
  readOnly: true
- name: host-units-usr-lib
  mountPath: /host/usr/lib/systemd/system
  readOnly: true
- name: host-units-usr-local
  mountPath: /host/usr/local/lib/systemd/system
  readOnly: true
{{- end }}

{{- define "kata-deploy.systemdVolumes" -}}
- name: host-systemd-run
  hostPath:
    path: /run/systemd
    type: Directory
- name: host-units-etc
  hostPath:
    path: /etc/systemd/system
    type: DirectoryOrCreate
- name: host-units-lib
  hostPath:
    path: /lib/systemd/system
    type: DirectoryOrCreate
- name: host-units-usr-lib
  hostPath:
    path: /usr/lib/systemd/system
    type: DirectoryOrCreate
- name: host-units-usr-local
  hostPath:
    path: /usr/local/lib/systemd/system
    type: DirectoryOrCreate
{{- end }}

{{/*
kata-deploy.installerMounts / installerVolumes: what both installers mount
beside their runtime's configuration. Call with the root context.
*/}}
{{- define "kata-deploy.installerMounts" -}}
- name: host-opt
  mountPath: {{ printf "/host%s" (clean .Values.installPrefix) }}
- name: host-journal
  mountPath: /host/var/lib/kata-deploy
{{ include "kata-deploy.systemdMounts" . }}
{{- end }}

{{- define "kata-deploy.installerVolumes" -}}
# {{ clean .Values.installPrefix }}, not {{ clean .Values.installPrefix }}/kata: the new tree is staged beside it and
# swapped in with renameat2(RENAME_EXCHANGE), which cannot cross a
# mount point.
# /var/lib/kata-deploy: the journal of every host file changed, kept
# so that an uninstall restores the exact former bytes.
# /run/systemd (read-only): systemd's private D-Bus socket, to
# restart the runtime. Connecting to a socket needs no write access
# to the file system it is on, and the directory (not the socket
# file) is mounted so a systemd re-exec is followed.
# Unit directories (read-only): runtime detection looks for the
# runtime's unit file in each directory systemd loads units from.
- name: host-opt
  hostPath:
    path: {{ clean .Values.installPrefix }}
    type: DirectoryOrCreate
- name: host-journal
  hostPath:
    path: /var/lib/kata-deploy
    type: DirectoryOrCreate
{{ include "kata-deploy.systemdVolumes" . }}
{{- end }}

{{/* kata-deploy.configMounts.<runtime>: where each runtime family's configuration lives. */}}
{{- define "kata-deploy.configMounts.containerd" -}}
- name: host-etc-containerd
  mountPath: /host/etc/containerd
- name: host-k3s-containerd
  mountPath: /host/var/lib/rancher/k3s/agent/etc/containerd
- name: host-rke2-containerd
  mountPath: /host/var/lib/rancher/rke2/agent/etc/containerd
- name: host-etc-k0s
  mountPath: /host/etc/k0s
- name: host-microk8s
  mountPath: /host/var/snap/microk8s
- name: host-usr-local-bin
  mountPath: /host/usr/local/bin
- name: host-containerd-run
  mountPath: /host/run/containerd
  readOnly: true
- name: host-k3s-containerd-run
  mountPath: /host/run/k3s/containerd
  readOnly: true
- name: host-k0s-run
  mountPath: /host/run/k0s
  readOnly: true
{{- end }}

{{- define "kata-deploy.configVolumes.containerd" -}}
# Runtime configuration, one mount per place containerd's config lives,
# each as narrow as it can be without creating misleading files on
# nodes that do not run that distribution (a missing hostPath is
# created empty, mode 0755, by the kubelet):
# - /etc/containerd (plain containerd; a 2.x node may not have it yet,
#   and kata-deploy then writes the config it needs there);
# - k3s and rke2: only agent/etc/containerd, not /var/lib/rancher,
#   which holds the server's datastore and tokens;
# - k0s: /etc/k0s, not /etc/k0s/containerd.d, because that directory's
#   existence is how a k0s node is recognised: creating it empty on
#   every node would make detection see k0s everywhere;
# - microk8s: /var/snap/microk8s, not .../current/args, because
#   "current" is snapd's symlink to the active revision: creating it as
#   a directory on a node without microk8s would break a later snap
#   install.
# Paths are resolved inside /host (an absolute symlink such as
# /etc/containerd/config.toml -> /etc/kubernetes/containerd.toml is
# followed to /host/etc/kubernetes/...): a config whose link target
# lies outside these mounts is not found, and the install fails
# naming the path. Mount the target's directory too in that case;
# mounting the whole host root instead would remove the problem but
# give the installer every file on the node.
- name: host-etc-containerd
  hostPath:
    path: /etc/containerd
    type: DirectoryOrCreate
- name: host-k3s-containerd
  hostPath:
    path: /var/lib/rancher/k3s/agent/etc/containerd
    type: DirectoryOrCreate
- name: host-rke2-containerd
  hostPath:
    path: /var/lib/rancher/rke2/agent/etc/containerd
    type: DirectoryOrCreate
- name: host-etc-k0s
  hostPath:
    path: /etc/k0s
    type: DirectoryOrCreate
- name: host-microk8s
  hostPath:
    path: /var/snap/microk8s
    type: DirectoryOrCreate
# /usr/local/bin, writable: only containerd before 1.7 needs it. Its CRI
# plugin never passes runtime_path on (containerd issue 8207), so it
# runs containerd-shim-kata-<shim>-v2, the name runtime_type implies,
# found on its PATH; the installer links each handler's shim there and
# uninstall removes exactly those links (never a file it did not make).
# On containerd 1.7 and later nothing is written here. Directory, not
# the files: links are made under a temporary name and renamed in.
- name: host-usr-local-bin
  hostPath:
    path: /usr/local/bin
    type: DirectoryOrCreate
# The runtime's CRI socket directory (read-only: connecting to a socket
# needs no write access to its file system), to check that the
# restarted runtime serves the Kata handlers: plain containerd, k3s and
# rke2, k0s (microk8s's is under /var/snap/microk8s, mounted above).
# The directory, not the socket, so a restarted runtime's new socket is
# seen. /run is a tmpfs: a directory made for a runtime the node does
# not run is gone at the next boot.
- name: host-containerd-run
  hostPath:
    path: /run/containerd
    type: DirectoryOrCreate
- name: host-k3s-containerd-run
  hostPath:
    path: /run/k3s/containerd
    type: DirectoryOrCreate
- name: host-k0s-run
  hostPath:
    path: /run/k0s
    type: DirectoryOrCreate
{{- end }}

{{- define "kata-deploy.configMounts.crio" -}}
- name: host-etc-crio
  mountPath: /host/etc/crio
- name: host-crio-run
  mountPath: /host/run/crio
  readOnly: true
{{- end }}

{{- define "kata-deploy.configVolumes.crio" -}}
# Runtime configuration: the drop-in goes to /etc/crio/crio.conf.d.
# Paths are resolved inside /host (an absolute symlink is followed to
# /host/<target>): a config whose link target lies outside these
# mounts is not found, and the install fails naming the path. Mount
# the target's directory too in that case; mounting the whole host
# root instead would remove the problem but give the installer every
# file on the node.
- name: host-etc-crio
  hostPath:
    path: /etc/crio
    type: DirectoryOrCreate
# CRI-O's socket directory (read-only), to check that the restarted
# runtime serves the Kata handlers.
- name: host-crio-run
  hostPath:
    path: /run/crio
    type: DirectoryOrCreate
{{- end }}

{{/*
kata-deploy.installer: one installer DaemonSet. Call with
(dict "root" $ "runtime" "containerd"|"crio"); both runtime families share
everything but their name, node label, KATA_RUNTIME and config mounts.
*/}}
{{- define "kata-deploy.installer" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $component := printf "installer-%s" .runtime -}}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ include "kata-deploy.name" (list $root (printf "kata-deploy-%s" .runtime)) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kata-deploy.labels" (list $root $component) | nindent 4 }}
spec:
  selector:
    matchLabels:
      {{- include "kata-deploy.labels" (list $root $component) | nindent 6 }}
  {{- with $v.updateStrategy }}
  updateStrategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "kata-deploy.labels" (list $root $component) | nindent 8 }}
      annotations:
        # Every value the installer reads: a change rolls the pods (a
        # rolling update undoes nothing; the new pod applies the change).
        checksum/installer-config: {{ include "kata-deploy.installerConfig" $root | sha256sum }}
    spec:
      serviceAccountName: {{ include "kata-deploy.name" (list $root "kata-installer") }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      nodeSelector:
        {{ $v.labelDomain }}/container-runtime: {{ .runtime }}
        {{- with $v.nodeSelector }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      # The default (operator: Exists) lets Kata reach tainted nodes too
      # (dedicated pools, control planes).
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      # On SIGTERM the installer uninstalls: it restores the runtime's
      # config, restarts the runtime, waits for it to come back and removes
      # /opt/kata. Restarting containerd or CRI-O with many pods, or a slow
      # disk, can take minutes; a SIGKILL half-way would leave the node to
      # the next install's crash recovery.
      terminationGracePeriodSeconds: 300
      containers:
        - name: kata-installer
          image: {{ include "kata-deploy.image" $root }}
          imagePullPolicy: {{ $v.imagePullPolicy }}
          command: ["/usr/local/bin/kata-installer", "install"]
          env:
            {{- include "kata-deploy.installerEnv" . | nindent 12 }}
          ports:
            - name: health
              containerPort: 8091
          readinessProbe:
            httpGet:
              path: /readyz
              port: health
            # A rolling update waits for each new pod to be Ready.
            periodSeconds: 2
          livenessProbe:
            httpGet:
              path: /healthz
              port: health
            periodSeconds: 20
            failureThreshold: 6
          # Installing hashes every payload file once; memory stays small
          # because files are streamed.
          resources:
            {{- toYaml $v.resources.installer | nindent 12 }}
          securityContext:
            # uid 0 is required: systemd serves its private socket to root
            # only, and the files it edits are root's, mode 0644 or tighter.
            runAsUser: 0
            runAsGroup: 0
            runAsNonRoot: false
            # Not privileged. The installer writes files and talks to
            # systemd over a socket; it mounts nothing, touches no device,
            # enters no namespace. Root needs these capabilities to do that
            # on any file it may meet: CHOWN (a replaced config keeps its
            # owner), DAC_OVERRIDE (files or directories that are not
            # owner-writable, e.g. 0600 configs of another user), FOWNER
            # (chmod and utimes on files it does not own).
            privileged: false
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
              add: ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
            seccompProfile:
              type: RuntimeDefault
            # On SELinux hosts a container's type (container_t) may neither
            # write etc_t/usr_t files nor connect to init's socket; spc_t is
            # the type privileged containers get. Ignored where SELinux is off.
            seLinuxOptions:
              type: spc_t
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include (printf "kata-deploy.configMounts.%s" .runtime) $root | nindent 12 }}
            {{- include "kata-deploy.installerMounts" $root | nindent 12 }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- include (printf "kata-deploy.configVolumes.%s" .runtime) $root | nindent 8 }}
        {{- include "kata-deploy.installerVolumes" $root | nindent 8 }}
{{- end }}
