//go:build ignore

// Command containerd-shim-kata-standin is the testbed's stand-in for Kata's
// containerd-shim-kata-v2. The testbed nodes cannot run virtual machines, so the
// test payload installs this binary as /opt/kata/bin/containerd-shim-kata-v2: it is
// containerd v2's own runc shim (cmd/containerd-shim-runc-v2: its manager and task
// service) wrapped so that
//
//   - every invocation that names a pod (start, the Create task call, delete, -info)
//     appends one JSON line to /var/log/kata-standin-shim.jsonl (override:
//     KATA_STANDIN_SHIM_LOG) with the arguments, environment, stdin, the runtime
//     options and the pod's CRI annotations, so a test can prove which pod ran under
//     this shim and with which Kata ConfigPath;
//   - it speaks the shim protocol the way Kata's shim does: `start` prints a bare
//     socket address (containerd 1.6 and CRI-O read stdout, or stdout+stderr, as the
//     address; containerd 2.x takes a bare address as a version-2 shim) and the
//     server answers both containerd.task.v2.Task (containerd 1.6, CRI-O, containerd
//     2.x with a version-2 shim) and containerd.task.v3.Task;
//   - the Kata options (runtimeoptions.v1.Options{TypeUrl, ConfigPath, ConfigBody})
//     never reach runc's task service, which would fail on them
//     (runc.NewContainer asserts v.(*options.Options) unchecked: a panic that ttrpc
//     does not recover, killing the shim); it gets runc options instead, with
//     SystemdCgroup set when the bundle's cgroupsPath is in systemd's
//     "slice:prefix:name" form.
//
// It is built by hack/testbed.sh inside the containerd wrapper module (this file
// carries `//go:build ignore` so the project's own go build/vet skip it) and is a
// test fixture only: it gives no isolation beyond runc's.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	defaultLog = "/var/log/kata-standin-shim.jsonl"
	logEnv     = "KATA_STANDIN_SHIM_LOG"
	// Name under which the shim reports itself (containerd logs, -info).
	shimName = "io.containerd.kata.v2"
)

func main() {
	logPath := os.Getenv(logEnv)
	if logPath == "" {
		logPath = defaultLog
	}
	rec := recorder{path: logPath}
	registry.Register(&plugin.Registration{
		Type: plugins.TTRPCPlugin,
		ID:   "task",
		Requires: []plugin.Type{
			plugins.EventPlugin,
			plugins.InternalPlugin,
		},
		// Same wiring as the runc shim's task/plugin package, with our wrapper around it.
		InitFn: func(ic *plugin.InitContext) (interface{}, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			ts, err := task.NewTaskService(ic.Context, pp.(shim.Publisher), ss.(shutdown.Service))
			if err != nil {
				return nil, err
			}
			return &taskService{TTRPCTaskService: ts, rec: rec}, nil
		},
	})
	shim.Run(context.Background(), &standinManager{Manager: manager.NewShimManager(shimName), rec: rec})
}

// record is one line of the JSONL log. Fields that do not apply to an event are left out.
type record struct {
	Time      string `json:"time"`
	Event     string `json:"event"` // start | create | delete | info
	PID       int    `json:"pid"`
	ID        string `json:"id,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Bundle    string `json:"bundle,omitempty"`

	Argv  []string          `json:"argv,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Stdin *payload          `json:"stdin,omitempty"`

	// Options is the Create request's runtime options as the runtime sent them.
	Options *payload `json:"options,omitempty"`
	// ConfigPath is runtimeoptions' ConfigPath, from stdin or the Create options.
	ConfigPath       string `json:"config_path,omitempty"`
	ConfigPathExists *bool  `json:"config_path_exists,omitempty"`
	// RuncOptions is what runc's task service was given instead of Options.
	RuncOptions json.RawMessage `json:"runc_options,omitempty"`

	CgroupsPath   string            `json:"cgroups_path,omitempty"`
	SandboxID     string            `json:"sandbox_id,omitempty"`
	PodName       string            `json:"pod_name,omitempty"`
	PodNamespace  string            `json:"pod_namespace,omitempty"`
	PodUID        string            `json:"pod_uid,omitempty"`
	ContainerType string            `json:"container_type,omitempty"`
	ContainerName string            `json:"container_name,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	SpecError     string            `json:"spec_error,omitempty"`
	// OOMScoreAdjClamped is the negative oomScoreAdj raised to 0 (see clampOOMScoreAdj).
	OOMScoreAdjClamped *int `json:"oom_score_adj_clamped,omitempty"`
}

// payload describes a protobuf Any (the start stdin or the Create options).
type payload struct {
	Len     int             `json:"len"`
	TypeURL string          `json:"type_url,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	Raw     string          `json:"raw_base64,omitempty"`
	Error   string          `json:"error,omitempty"`
}

type recorder struct{ path string }

func newRecord(event, id string) record {
	return record{Time: time.Now().UTC().Format(time.RFC3339Nano), Event: event, PID: os.Getpid(), ID: id}
}

// write appends r as one line with a single write(2) on an O_APPEND descriptor, so
// concurrent shims never interleave their lines.
func (rc recorder) write(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("standin-shim: encode record: %w", err)
	}
	f, err := os.OpenFile(rc.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("standin-shim: record: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("standin-shim: record %s: %w", rc.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("standin-shim: record %s: %w", rc.path, err)
	}
	return nil
}

// describeAny decodes an Any for the log; it returns the runtimeoptions' ConfigPath if
// that is what it holds.
func describeAny(a *anypb.Any) (*payload, string) {
	p := &payload{Len: len(a.GetValue()), TypeURL: a.GetTypeUrl()}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		p.Error = err.Error()
		p.Raw = base64.StdEncoding.EncodeToString(a.GetValue())
		return p, ""
	}
	configPath := ""
	var out []byte
	switch o := v.(type) {
	case *runtimeoptions.Options:
		// ConfigBody as text: it is the TOML table of the handler's options.
		configPath = o.ConfigPath
		out, err = json.Marshal(map[string]string{
			"type_url": o.TypeUrl, "config_path": o.ConfigPath, "config_body": string(o.ConfigBody),
		})
	case proto.Message:
		out, err = protojson.Marshal(o)
	default:
		out, err = json.Marshal(o)
	}
	if err != nil {
		p.Error = err.Error()
		return p, configPath
	}
	p.Value = out
	return p, configPath
}

// describeStdin decodes what the runtime piped to `start` (a marshalled Any, or nothing).
func describeStdin(b []byte) (*payload, string) {
	if len(b) == 0 {
		return &payload{}, ""
	}
	var a anypb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return &payload{Len: len(b), Raw: base64.StdEncoding.EncodeToString(b), Error: err.Error()}, ""
	}
	p, cp := describeAny(&a)
	p.Len = len(b)
	return p, cp
}

// spec is the part of the bundle's config.json the record needs.
type spec struct {
	Annotations map[string]string `json:"annotations"`
	Process     *struct {
		OOMScoreAdj *int `json:"oomScoreAdj"`
	} `json:"process"`
	Linux *struct {
		CgroupsPath string `json:"cgroupsPath"`
	} `json:"linux"`
}

func readSpec(bundle string) (*spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &s, nil
}

// addSpec fills the pod fields from the bundle's annotations: containerd's CRI uses
// io.kubernetes.cri.*, CRI-O io.kubernetes.cri-o.* and the kubelet's io.kubernetes.pod.*.
func (r *record) addSpec(bundle string) *spec {
	s, err := readSpec(bundle)
	if err != nil {
		r.SpecError = err.Error()
		return nil
	}
	if s.Linux != nil {
		r.CgroupsPath = s.Linux.CgroupsPath
	}
	a := s.Annotations
	r.Annotations = map[string]string{}
	for k, v := range a {
		if strings.HasPrefix(k, "io.kubernetes.") || strings.HasPrefix(k, "io.katacontainers.") {
			r.Annotations[k] = v
		}
	}
	// CRI-O keeps the kubelet's labels as JSON, the CRI metadata as JSON, and names the
	// sandbox k8s_<pod>_<namespace>_<uid>_<attempt> (no part may contain "_").
	var labels map[string]string
	_ = json.Unmarshal([]byte(a["io.kubernetes.cri-o.Labels"]), &labels)
	var meta struct{ Name string }
	_ = json.Unmarshal([]byte(a["io.kubernetes.cri-o.Metadata"]), &meta)
	var sb [5]string
	if parts := strings.Split(a["io.kubernetes.cri-o.SandboxName"], "_"); len(parts) == 5 && parts[0] == "k8s" {
		copy(sb[:], parts)
	}
	first := func(vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return ""
	}
	r.SandboxID = first(a["io.kubernetes.cri.sandbox-id"], a["io.kubernetes.cri-o.SandboxID"])
	r.PodName = first(a["io.kubernetes.cri.sandbox-name"], a["io.kubernetes.pod.name"],
		labels["io.kubernetes.pod.name"], sb[1])
	r.PodNamespace = first(a["io.kubernetes.cri.sandbox-namespace"], a["io.kubernetes.pod.namespace"],
		labels["io.kubernetes.pod.namespace"], sb[2])
	r.PodUID = first(a["io.kubernetes.cri.sandbox-uid"], a["io.kubernetes.pod.uid"],
		labels["io.kubernetes.pod.uid"], sb[3])
	r.ContainerType = first(a["io.kubernetes.cri.container-type"], a["io.kubernetes.cri-o.ContainerType"])
	crioName := ""
	if a["io.kubernetes.cri-o.ContainerType"] == "container" {
		crioName = meta.Name
	}
	r.ContainerName = first(a["io.kubernetes.cri.container-name"], a["io.kubernetes.container.name"],
		labels["io.kubernetes.container.name"], crioName)
	return s
}

func (r *record) setConfigPath(p string) {
	if p == "" {
		return
	}
	r.ConfigPath = p
	_, err := os.Stat(p)
	ok := err == nil
	r.ConfigPathExists = &ok
}

// interestingEnv is what containerd and CRI-O set for a shim, plus anything Kata-ish.
func interestingEnv() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "TTRPC_ADDRESS", k == "GRPC_ADDRESS", k == "NAMESPACE", k == "MAX_SHIM_VERSION",
			k == "GOMAXPROCS", k == "SCHED_CORE", k == "PATH", k == logEnv,
			strings.HasPrefix(k, "KATA_"), strings.HasPrefix(k, "CONTAINERD_"), strings.HasPrefix(k, "OTEL_"):
			env[k] = v
		}
	}
	return env
}

// readStdin reads what the runtime piped in; a terminal (someone running the binary
// by hand) is not read.
func readStdin() ([]byte, error) {
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err == nil {
		return nil, nil
	}
	return io.ReadAll(os.Stdin)
}

// runcOnly returns b if it holds runc options (runc's manager applies their
// ShimCgroup), else nothing: runc's manager must not see the Kata options.
func runcOnly(b []byte) []byte {
	var a anypb.Any
	if len(b) == 0 || proto.Unmarshal(b, &a) != nil {
		return nil
	}
	if _, ok := asRunc(&a); ok {
		return b
	}
	return nil
}

// bytesReader is an *os.File reading b (runc's manager reads os.Stdin itself).
func bytesReader(b []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() {
		_, _ = w.Write(b)
		w.Close()
	}()
	return r, nil
}

// writeAddress writes the shim's address to ./address (the bundle) atomically.
func writeAddress(address string) error {
	f, err := os.CreateTemp(".", ".address-")
	if err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(address); err != nil {
		f.Close()
		return fmt.Errorf("address file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("address file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	if err := os.Rename(f.Name(), "address"); err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	return nil
}

// standinManager is runc's shim manager with the start/delete/-info invocations
// recorded and the Kata options kept from it.
type standinManager struct {
	shim.Manager
	rec recorder
}

func (m *standinManager) Start(ctx context.Context, id string, opts shim.StartOpts) (shim.BootstrapParams, error) {
	var params shim.BootstrapParams
	in, err := readStdin()
	if err != nil {
		return params, fmt.Errorf("standin-shim: read stdin: %w", err)
	}
	r := newRecord("start", id)
	r.Namespace, _ = namespaces.Namespace(ctx)
	r.Argv = os.Args
	r.Env = interestingEnv()
	r.Bundle, _ = os.Getwd()
	var cp string
	r.Stdin, cp = describeStdin(in)
	r.setConfigPath(cp)
	r.addSpec(r.Bundle)
	if err := m.rec.write(r); err != nil {
		return params, err
	}

	if os.Stdin, err = bytesReader(runcOnly(in)); err != nil {
		return params, fmt.Errorf("standin-shim: %w", err)
	}
	params, err = m.Manager.Start(ctx, id, opts)
	if err != nil {
		return params, err
	}
	// containerd 1.6 and CRI-O reconnect after a restart through the bundle's
	// "address" file, and the serving shim removes its socket on shutdown through it;
	// containerd 2.x's runc shim no longer writes it (containerd keeps bootstrap.json).
	if err := writeAddress(params.Address); err != nil {
		return params, fmt.Errorf("standin-shim: %w", err)
	}
	// shim.Run prints the bootstrap parameters as version-3 JSON after Start returns.
	// Like Kata's shim, print the bare address instead: containerd 1.6 and CRI-O use
	// the output verbatim as the address; containerd 2.x reads it as a version-2 shim.
	if _, err := io.WriteString(os.Stdout, params.Address); err != nil {
		return params, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return params, err
	}
	os.Stdout = devnull
	return params, nil
}

func (m *standinManager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	r := newRecord("delete", id)
	r.Namespace, _ = namespaces.Namespace(ctx)
	r.Argv = os.Args
	r.Bundle, _ = os.Getwd()
	r.addSpec(r.Bundle)
	// Cleanup must go on even if the record cannot be written.
	recErr := m.rec.write(r)
	st, err := m.Manager.Stop(ctx, id)
	return st, errors.Join(err, recErr)
}

func (m *standinManager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	in, err := io.ReadAll(optionsR)
	if err != nil {
		return nil, fmt.Errorf("standin-shim: read options: %w", err)
	}
	r := newRecord("info", "")
	r.Argv = os.Args
	var cp string
	r.Stdin, cp = describeStdin(in)
	r.setConfigPath(cp)
	if err := m.rec.write(r); err != nil {
		return nil, err
	}
	return m.Manager.Info(ctx, strings.NewReader(string(runcOnly(in))))
}

// taskService is runc's task service with Create recording and translating the
// options; every other call goes straight through.
type taskService struct {
	taskv3.TTRPCTaskService
	rec recorder
}

// RegisterTTRPC serves the task API as both v3 (the runc shim's own) and v2 (what
// containerd 1.6, CRI-O and containerd 2.x with a bare-address shim call).
func (s *taskService) RegisterTTRPC(server *ttrpc.Server) error {
	taskv3.RegisterTTRPCTaskService(server, s)
	taskv2.RegisterTaskService(server, v2Task{s})
	return nil
}

func isSystemdCgroupsPath(p string) bool {
	return p != "" && !strings.HasPrefix(p, "/") && strings.Count(p, ":") == 2
}

func (s *taskService) Create(ctx context.Context, req *taskv3.CreateTaskRequest) (*taskv3.CreateTaskResponse, error) {
	r := newRecord("create", req.ID)
	r.Namespace, _ = namespaces.Namespace(ctx)
	r.Bundle = req.Bundle
	sp := r.addSpec(req.Bundle)

	ro, substitute := &options.Options{}, true
	if req.Options != nil {
		var cp string
		r.Options, cp = describeAny(req.Options)
		r.setConfigPath(cp)
		if o, ok := asRunc(req.Options); ok {
			ro, substitute = o, false // runc options already: pass them on untouched
		}
	}
	if substitute && sp != nil && sp.Linux != nil {
		ro.SystemdCgroup = isSystemdCgroupsPath(sp.Linux.CgroupsPath)
	}
	if b, err := (protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true}).Marshal(ro); err == nil {
		r.RuncOptions = b
	}
	if sp != nil && sp.Process != nil && sp.Process.OOMScoreAdj != nil && *sp.Process.OOMScoreAdj < 0 && !hasCapSysResource() {
		if err := clampOOMScoreAdj(req.Bundle); err != nil {
			return nil, fmt.Errorf("standin-shim: %w", err)
		}
		r.OOMScoreAdjClamped = sp.Process.OOMScoreAdj
	}
	if err := s.rec.write(r); err != nil {
		return nil, err
	}
	// Kata's shim fails when its configuration file is missing; so does the stand-in,
	// so a test catches a ConfigPath that points nowhere.
	if r.ConfigPathExists != nil && !*r.ConfigPathExists {
		return nil, fmt.Errorf("standin-shim: Kata configuration %s (ConfigPath of the runtime options) does not exist", r.ConfigPath)
	}
	if substitute {
		a, err := typeurl.MarshalAnyToProto(ro)
		if err != nil {
			return nil, fmt.Errorf("standin-shim: runc options: %w", err)
		}
		req.Options = a
	}
	return s.TTRPCTaskService.Create(ctx, req)
}

// hasCapSysResource reports whether this process (and so runc) may lower an
// oom_score_adj. systemd-nspawn nodes on a host without it in the bounding set lack it.
func hasCapSysResource() bool {
	const capSysResource = 24
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true // let runc try and report
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || caps&(1<<capSysResource) != 0
		}
	}
	return true
}

// clampOOMScoreAdj raises a negative process.oomScoreAdj in the bundle's config.json
// to 0. The kubelet and the runtimes ask for -998 (sandboxes) or -997 (Guaranteed pods);
// without CAP_SYS_RESOURCE runc's init then dies ("can't get final child's PID from
// pipe"). Kata never applies it to the host either: the pod's processes live in the VM.
// The file is rewritten atomically with every other value kept as written (UseNumber).
func clampOOMScoreAdj(bundle string) error {
	path := filepath.Join(bundle, "config.json")
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	proc, ok := doc["process"].(map[string]any)
	if !ok {
		return nil
	}
	proc["oomScoreAdj"] = 0
	out, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	f, err := os.CreateTemp(bundle, ".config.json-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(out); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func asRunc(a *anypb.Any) (*options.Options, bool) {
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, false
	}
	o, ok := v.(*options.Options)
	return o, ok
}

// convert copies src into dst through the wire format: the task v2 and v3 messages
// are the same protobuf messages in two packages.
func convert(src, dst proto.Message) error {
	b, err := proto.Marshal(src)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, dst)
}

// bridge calls a v3 method with a v2 request and returns its answer as a v2 response.
func bridge[Req3, Resp2 any, PReq3 interface {
	*Req3
	proto.Message
}, PResp2 interface {
	*Resp2
	proto.Message
}, Resp3 proto.Message](ctx context.Context, req proto.Message, fn func(context.Context, PReq3) (Resp3, error)) (PResp2, error) {
	in := PReq3(new(Req3))
	if err := convert(req, in); err != nil {
		return nil, fmt.Errorf("standin-shim: task v2 request: %w", err)
	}
	out, err := fn(ctx, in)
	if err != nil {
		return nil, err
	}
	res := PResp2(new(Resp2))
	if err := convert(out, res); err != nil {
		return nil, fmt.Errorf("standin-shim: task v2 response: %w", err)
	}
	return res, nil
}

// v2Task serves containerd.task.v2.Task on top of the v3 service.
type v2Task struct{ s *taskService }

func (t v2Task) State(ctx context.Context, r *taskv2.StateRequest) (*taskv2.StateResponse, error) {
	return bridge[taskv3.StateRequest, taskv2.StateResponse](ctx, r, t.s.State)
}
func (t v2Task) Create(ctx context.Context, r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) {
	return bridge[taskv3.CreateTaskRequest, taskv2.CreateTaskResponse](ctx, r, t.s.Create)
}
func (t v2Task) Start(ctx context.Context, r *taskv2.StartRequest) (*taskv2.StartResponse, error) {
	return bridge[taskv3.StartRequest, taskv2.StartResponse](ctx, r, t.s.Start)
}
func (t v2Task) Delete(ctx context.Context, r *taskv2.DeleteRequest) (*taskv2.DeleteResponse, error) {
	return bridge[taskv3.DeleteRequest, taskv2.DeleteResponse](ctx, r, t.s.Delete)
}
func (t v2Task) Pids(ctx context.Context, r *taskv2.PidsRequest) (*taskv2.PidsResponse, error) {
	return bridge[taskv3.PidsRequest, taskv2.PidsResponse](ctx, r, t.s.Pids)
}
func (t v2Task) Pause(ctx context.Context, r *taskv2.PauseRequest) (*emptypb.Empty, error) {
	return bridge[taskv3.PauseRequest, emptypb.Empty](ctx, r, t.s.Pause)
}
func (t v2Task) Resume(ctx context.Context, r *taskv2.ResumeRequest) (*emptypb.Empty, error) {
	return bridge[taskv3.ResumeRequest, emptypb.Empty](ctx, r, t.s.Resume)
}
func (t v2Task) Checkpoint(ctx context.Context, r *taskv2.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return bridge[taskv3.CheckpointTaskRequest, emptypb.Empty](ctx, r, t.s.Checkpoint)
}
func (t v2Task) Kill(ctx context.Context, r *taskv2.KillRequest) (*emptypb.Empty, error) {
	return bridge[taskv3.KillRequest, emptypb.Empty](ctx, r, t.s.Kill)
}
func (t v2Task) Exec(ctx context.Context, r *taskv2.ExecProcessRequest) (*emptypb.Empty, error) {
	return bridge[taskv3.ExecProcessRequest, emptypb.Empty](ctx, r, t.s.Exec)
}
func (t v2Task) ResizePty(ctx context.Context, r *taskv2.ResizePtyRequest) (*emptypb.Empty, error) {
	return bridge[taskv3.ResizePtyRequest, emptypb.Empty](ctx, r, t.s.ResizePty)
}
func (t v2Task) CloseIO(ctx context.Context, r *taskv2.CloseIORequest) (*emptypb.Empty, error) {
	return bridge[taskv3.CloseIORequest, emptypb.Empty](ctx, r, t.s.CloseIO)
}
func (t v2Task) Update(ctx context.Context, r *taskv2.UpdateTaskRequest) (*emptypb.Empty, error) {
	return bridge[taskv3.UpdateTaskRequest, emptypb.Empty](ctx, r, t.s.Update)
}
func (t v2Task) Wait(ctx context.Context, r *taskv2.WaitRequest) (*taskv2.WaitResponse, error) {
	return bridge[taskv3.WaitRequest, taskv2.WaitResponse](ctx, r, t.s.Wait)
}
func (t v2Task) Stats(ctx context.Context, r *taskv2.StatsRequest) (*taskv2.StatsResponse, error) {
	return bridge[taskv3.StatsRequest, taskv2.StatsResponse](ctx, r, t.s.Stats)
}
func (t v2Task) Connect(ctx context.Context, r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	return bridge[taskv3.ConnectRequest, taskv2.ConnectResponse](ctx, r, t.s.Connect)
}
func (t v2Task) Shutdown(ctx context.Context, r *taskv2.ShutdownRequest) (*emptypb.Empty, error) {
	return bridge[taskv3.ShutdownRequest, emptypb.Empty](ctx, r, t.s.Shutdown)
}
