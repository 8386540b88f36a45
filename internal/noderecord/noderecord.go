package noderecord

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/journal"
)

// Dir is the host directory that holds the records (the journals' too).
const Dir = journal.Dir

// Version is the record format this package writes and reads.
const Version = 1

// State says how far an install got.
type State string

// The states of an install, in the order an install moves through them.
const (
	// Installing: written before the first change; the install may have
	// stopped anywhere after it.
	Installing State = "installing"
	// PendingRestart: everything is written, but the runtime was not
	// restarted (--restart=false) and does not serve the handlers yet; a
	// later run, or the runtime's next restart, finishes the job.
	PendingRestart State = "pending-restart"
	// Installed: the runtime was verified to serve every handler.
	Installed State = "installed"
	// Uninstalling: an uninstall has started; it may have stopped anywhere
	// after it.
	Uninstalling State = "uninstalling"
	// Uninstalled: the payload and the runtime config are gone; the record
	// stays only for the cleanup, which restarts the runtime it names and
	// then removes it.
	Uninstalled State = "uninstalled"
)

// Runtime is the container runtime an install configured.
type Runtime struct {
	Variant string `json:"variant"`           // a runtime.Variant name, e.g. "containerd", "k3s"
	Version string `json:"version"`           // as detected at install, e.g. "1.6.20"
	Config  string `json:"config,omitempty"`  // --runtime-config as given, when not the variant's usual one
	Unit    string `json:"unit,omitempty"`    // its systemd unit, if any
	Socket  string `json:"socket,omitempty"`  // its CRI socket (host path)
	Journal string `json:"journal,omitempty"` // host path of the config engine's journal
}

// Handler is one runtime handler an install registered.
type Handler struct {
	Name        string `json:"name"`
	Shim        string `json:"shim"`
	ShimPath    string `json:"shimPath"`
	ConfigPath  string `json:"configPath"`
	Snapshotter string `json:"snapshotter,omitempty"`
}

// Record is one install on the node.
type Record struct {
	Version int       `json:"version"`
	State   State     `json:"state"`
	Updated time.Time `json:"updated"`
	Runtime Runtime   `json:"runtime"`
	Mode    string    `json:"mode"`
	Prefix  string    `json:"prefix"`
	Suffix  string    `json:"suffix,omitempty"`
	Dest    string    `json:"dest"`              // host path of the Kata tree
	Payload string    `json:"payload,omitempty"` // the payload as given to the installer
	// Handlers are the registered handlers, the default one first.
	Handlers []Handler `json:"handlers"`
	// ConfigFiles are the runtime config files kata-deploy created or
	// edited (host paths), as its config engine planned them.
	ConfigFiles []string `json:"configFiles,omitempty"`
	// StateDirs are directories made to hold the record itself, outermost
	// first: removed with it when empty.
	StateDirs []string `json:"stateDirs,omitempty"`
}

// PathFor returns the host path of the record of the install named by
// suffix ("" for the default install).
func PathFor(suffix string) string {
	if suffix == "" {
		return path.Join(Dir, "install.json")
	}
	return path.Join(Dir, "install-"+suffix+".json")
}

// Shims returns the shims of the record's handlers, in the order given
// at install, and the shim behind the default handler.
func (r *Record) Shims() (shims []string, defaultShim string) {
	for i, h := range r.Handlers {
		if i == 0 {
			defaultShim = h.Shim
			continue
		}
		shims = append(shims, h.Shim)
	}
	return shims, defaultShim
}

// HandlerNames lists the record's handler names, the default one first.
func (r *Record) HandlerNames() []string {
	var out []string
	for _, h := range r.Handlers {
		out = append(out, h.Name)
	}
	return out
}

// Load reads the record of the install named by suffix; it returns nil
// and no error when there is none.
func Load(root *hostfs.Root, suffix string) (*Record, error) {
	return load(root, PathFor(suffix))
}

func load(root *hostfs.Root, p string) (*Record, error) {
	data, err := root.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the node's install record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("install record %s is corrupt (move it away to act on flags alone): %w", p, err)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("install record %s: version %d, this kata-deploy reads %d", p, r.Version, Version)
	}
	return &r, nil
}

// LoadAll reads every install record on the node, the default install
// first, then named installs by suffix.
func LoadAll(root *hostfs.Root) ([]*Record, error) {
	entries, err := root.ReadDir(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the node's install records: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, "install") && strings.HasSuffix(n, ".json") &&
			(n == "install.json" || strings.HasPrefix(n, "install-")) {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if a == "install.json" {
			return -1
		}
		if b == "install.json" {
			return 1
		}
		return strings.Compare(a, b)
	})
	var out []*Record
	for _, n := range names {
		r, err := load(root, path.Join(Dir, n))
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Equivalent reports whether a and b describe the same install in the same
// state, whenever they were written.
func Equivalent(a, b *Record) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Updated, y.Updated = time.Time{}, time.Time{}
	x.Version, y.Version = Version, Version
	xj, err1 := json.Marshal(x)
	yj, err2 := json.Marshal(y)
	return err1 == nil && err2 == nil && bytes.Equal(xj, yj)
}

// Save writes r atomically, making Dir (and remembering which directories
// it made) when needed. now is the time recorded as the last update. A
// record the node already holds, in the same state, is not written again:
// a run that changes nothing writes nothing.
func Save(root *hostfs.Root, r *Record, now time.Time) error {
	if cur, err := Load(root, r.Suffix); err == nil && cur != nil {
		r.Version = Version
		if len(r.StateDirs) == 0 {
			r.StateDirs = cur.StateDirs
		}
		if Equivalent(cur, r) {
			r.Updated = cur.Updated
			return nil
		}
	}
	root.RemoveTemps(PathFor(r.Suffix))
	made, err := root.MkdirAll(Dir, 0o700)
	if err != nil {
		return fmt.Errorf("make the node's state directory: %w", err)
	}
	if len(made) > 0 {
		r.StateDirs = made
	}
	r.Version = Version
	r.Updated = now.UTC().Truncate(time.Second)
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode install record: %w", err)
	}
	if err := root.WriteFile(PathFor(r.Suffix), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write install record: %w", err)
	}
	return nil
}

// Remove deletes r's file, then the directories made to hold it once they
// are empty (another install's record or an engine's journal keeps them).
func Remove(root *hostfs.Root, r *Record) error {
	p := PathFor(r.Suffix)
	root.RemoveTemps(p)
	if err := root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove install record: %w", err)
	}
	dirs := r.StateDirs
	if len(dirs) == 0 {
		// Dir was there already (an engine's journal, or an install made
		// before records existed): it goes too once nothing is left in it,
		// as the journals treat it.
		dirs = []string{Dir}
	}
	if _, err := root.RemoveEmptyDirs(dirs); err != nil {
		return fmt.Errorf("remove state directory: %w", err)
	}
	return nil
}
