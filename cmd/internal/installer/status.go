package installer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/kata-deploy/kata-deploy/artifacts"
	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/noderecord"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// StatusFormat is the version of the status JSON shape; it changes only
// when a field is removed or changes meaning (docs/status.md).
const StatusFormat = 1

// Status is what is installed on the node, as its records say, and what
// the runtime serves now. Its JSON form is documented in docs/status.md.
type Status struct {
	Format    int             `json:"format"`
	Installed bool            `json:"installed"`
	Installs  []InstallStatus `json:"installs"`
}

// InstallStatus is one install: the default one, or a named (suffixed) one.
type InstallStatus struct {
	// Record is the host path of the install's record; empty for an
	// install made by a kata-deploy that kept none.
	Record string `json:"record"`
	// State is the record's state (installing, pending-restart, installed,
	// uninstalling, uninstalled), or "unrecorded".
	State   string          `json:"state"`
	Updated string          `json:"updated"` // RFC 3339, UTC; "" when unrecorded
	Runtime RuntimeStatus   `json:"runtime"`
	Mode    string          `json:"mode"`
	Prefix  string          `json:"prefix"`
	Suffix  string          `json:"suffix"`
	Dest    string          `json:"dest"`
	Config  []string        `json:"config"` // runtime config files kata-deploy created or edited
	Handler []HandlerStatus `json:"handlers"`
	Payload *PayloadStatus  `json:"payload"` // null when no payload is installed
}

// RuntimeStatus is the runtime an install configured.
type RuntimeStatus struct {
	Variant string `json:"variant"`
	Version string `json:"version"` // as recorded at install
	Unit    string `json:"unit"`
	Socket  string `json:"socket"`
	// Answers says whether the runtime answered on its CRI socket now.
	Answers bool `json:"answers"`
}

// HandlerStatus is one runtime handler and whether the runtime serves it.
type HandlerStatus struct {
	Name        string `json:"name"`
	Shim        string `json:"shim"`
	ShimPath    string `json:"shimPath"`
	ConfigPath  string `json:"configPath"`
	Snapshotter string `json:"snapshotter"`
	// Served is "yes" or "no" as the runtime answers now, "unknown" when
	// it does not answer.
	Served string `json:"served"`
}

// PayloadStatus is the installed Kata tree.
type PayloadStatus struct {
	Dest   string       `json:"dest"`
	Layout string       `json:"layout"`
	Files  []FileStatus `json:"files"`
}

// FileStatus is one installed entry. Mode is the permission bits as an
// octal string ("0755"), as ls and chmod show them.
type FileStatus struct {
	Path   string `json:"path"`
	Type   string `json:"type"`
	Mode   string `json:"mode"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
	Target string `json:"target"`
}

// served values.
const (
	servedYes     = "yes"
	servedNo      = "no"
	servedUnknown = "unknown"
)

// Status reports every install the node records, with what the runtime
// serves now. It writes nothing. A node with no record falls back to what
// the flags name (an install made before records existed); an untouched
// node reports no install.
func (c *Config) Status(ctx context.Context) (*Status, error) {
	root, err := hostfs.New(c.HostRoot)
	if err != nil {
		return nil, err
	}
	recs, err := noderecord.LoadAll(root)
	if err != nil {
		return nil, err
	}
	s := &Status{Format: StatusFormat, Installs: []InstallStatus{}}
	for _, r := range recs {
		is, err := c.recordedStatus(ctx, root, r)
		if err != nil {
			return nil, err
		}
		s.Installs = append(s.Installs, *is)
	}
	if len(recs) == 0 {
		is, err := c.unrecordedStatus(ctx, root)
		if err != nil {
			return nil, err
		}
		if is != nil {
			s.Installs = append(s.Installs, *is)
		}
	}
	for _, is := range s.Installs {
		if is.State != string(noderecord.Uninstalled) {
			s.Installed = true
		}
	}
	return s, nil
}

func (c *Config) recordedStatus(ctx context.Context, root *hostfs.Root, r *noderecord.Record) (*InstallStatus, error) {
	is := &InstallStatus{
		Record:  noderecord.PathFor(r.Suffix),
		State:   string(r.State),
		Updated: r.Updated.UTC().Format(time.RFC3339),
		Runtime: RuntimeStatus{Variant: r.Runtime.Variant, Version: r.Runtime.Version, Unit: r.Runtime.Unit, Socket: r.Runtime.Socket},
		Mode:    r.Mode, Prefix: r.Prefix, Suffix: r.Suffix, Dest: r.Dest,
		Config:  append([]string{}, r.ConfigFiles...),
		Handler: []HandlerStatus{},
	}
	served, answers := c.askServed(ctx, root, runtime.Variant(r.Runtime.Variant))
	is.Runtime.Answers = answers
	for _, h := range r.Handlers {
		is.Handler = append(is.Handler, HandlerStatus{Name: h.Name, Shim: h.Shim, ShimPath: h.ShimPath, ConfigPath: h.ConfigPath,
			Snapshotter: h.Snapshotter, Served: servedValue(served, answers, h.Name)})
	}
	opts := []artifacts.Option{artifacts.WithInstallation(runtime.Installation{Prefix: r.Prefix, Suffix: r.Suffix})}
	p, err := payloadStatus(ctx, c.HostRoot, opts)
	if err != nil {
		return nil, err
	}
	is.Payload = p
	return is, nil
}

// unrecordedStatus looks where the flags say, for an install made by a
// kata-deploy that kept no record; nil when nothing is there.
func (c *Config) unrecordedStatus(ctx context.Context, root *hostfs.Root) (*InstallStatus, error) {
	p, err := payloadStatus(ctx, c.HostRoot, c.artifactOptions())
	if err != nil {
		return nil, err
	}
	var config []string
	var rs RuntimeStatus
	if t, err := c.detect(ctx, root); err == nil {
		if config, err = configFiles(ctx, t); err != nil {
			return nil, err
		}
		rs = RuntimeStatus{Variant: string(t.variant), Version: t.version.String(), Unit: t.variant.RuntimeUnit(), Socket: t.variant.CRISocket()}
	} else if p == nil {
		// No runtime to ask and no payload: nothing kata-deploy made.
		c.log().Debug("no install record, no payload, and no runtime detected", "err", err)
		return nil, nil
	}
	if p == nil && len(config) == 0 {
		return nil, nil
	}
	_, answers := c.askServed(ctx, root, runtime.Variant(rs.Variant))
	rs.Answers = answers
	return &InstallStatus{State: "unrecorded", Runtime: rs, Prefix: c.prefix(), Suffix: c.Suffix, Dest: c.dest(),
		Config: append([]string{}, config...), Handler: []HandlerStatus{}, Payload: p}, nil
}

// askServed asks the runtime which handlers it serves; answers is false
// when it cannot be asked.
func (c *Config) askServed(ctx context.Context, root *hostfs.Root, v runtime.Variant) (served []string, answers bool) {
	if v == "" {
		return nil, false
	}
	served, err := c.servedHandlers(ctx, root, v)
	if err != nil {
		c.log().Debug("the runtime does not answer", "variant", v, "err", err)
		return nil, false
	}
	return served, true
}

func servedValue(served []string, answers bool, name string) string {
	switch {
	case !answers:
		return servedUnknown
	case slices.Contains(served, name):
		return servedYes
	}
	return servedNo
}

func payloadStatus(ctx context.Context, hostRoot string, opts []artifacts.Option) (*PayloadStatus, error) {
	rec, err := artifacts.Status(ctx, hostRoot, opts...)
	if errors.Is(err, artifacts.ErrNotInstalled) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &PayloadStatus{Dest: rec.Dest, Layout: string(rec.Layout), Files: []FileStatus{}}
	for _, f := range rec.Files {
		p.Files = append(p.Files, FileStatus{Path: f.Path, Type: string(f.Type), Mode: fmt.Sprintf("%04o", uint32(f.Mode.Perm())),
			Size: f.Size, Digest: f.Digest, Target: f.Target})
	}
	return p, nil
}

// Write writes the status as "text" (for a person) or "json".
func (s *Status) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	case "text", "":
		s.writeText(w)
		return nil
	}
	return fmt.Errorf("unknown output format %q (want text or json)", format)
}

func (s *Status) writeText(w io.Writer) {
	if len(s.Installs) == 0 {
		fmt.Fprintln(w, "installed: no")
		return
	}
	for i, is := range s.Installs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "install:   %s (%s)\n", is.Dest, is.State)
		answers := "answers"
		if !is.Runtime.Answers {
			answers = "does not answer"
		}
		fmt.Fprintf(w, "runtime:   %s %s (%s)\n", is.Runtime.Variant, is.Runtime.Version, answers)
		if is.Payload != nil {
			fmt.Fprintf(w, "payload:   %s (%s, %d entries)\n", is.Payload.Dest, is.Payload.Layout, len(is.Payload.Files))
		}
		for _, p := range is.Config {
			fmt.Fprintf(w, "config:    %s\n", p)
		}
		for _, h := range is.Handler {
			extra := ""
			if h.Snapshotter != "" {
				extra = ", snapshotter " + h.Snapshotter
			}
			fmt.Fprintf(w, "handler:   %-*s served: %s (shim %s%s)\n", width(is.Handler), h.Name, h.Served, h.Shim, extra)
		}
		if is.Record == "" {
			fmt.Fprintln(w, "note:      no install record (installed by an older kata-deploy); uninstall goes by its flags")
		}
	}
}

func width(hs []HandlerStatus) int {
	n := 0
	for _, h := range hs {
		n = max(n, len(h.Name))
	}
	return n
}
