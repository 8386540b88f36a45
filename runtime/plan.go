package runtime

import (
	"context"
	"fmt"
	"io/fs"
	"strings"

	udiff "github.com/aymanbagabas/go-udiff"
)

// Op is what a FileChange does to a host path.
type Op int

// The operations a plan can hold.
const (
	Create    Op = iota + 1 // a new file
	Modify                  // new content for an existing file
	Delete                  // remove a file
	CreateDir               // a new directory
	RemoveDir               // remove a directory, only if empty
	// CreateSymlink makes Path a new symlink to Target. Nothing may exist
	// at Path: a file or link of someone else's is never replaced.
	CreateSymlink
	// RemoveSymlink removes the symlink Path, only while it still points
	// at Target (where the engine pointed it); its inverse is
	// CreateSymlink.
	RemoveSymlink
)

func (o Op) String() string {
	switch o {
	case Create:
		return "create"
	case Modify:
		return "modify"
	case Delete:
		return "delete"
	case CreateDir:
		return "create directory"
	case RemoveDir:
		return "remove directory"
	case CreateSymlink:
		return "create symlink"
	case RemoveSymlink:
		return "remove symlink"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// FileChange is one change to one host path.
type FileChange struct {
	Op   Op
	Path string // host path, e.g. /etc/containerd/config.toml
	// Before is the file's content when planned (Modify, Delete); applying
	// refuses to go on if the file no longer has it.
	Before []byte
	// After is the file's new content (Create, Modify).
	After []byte
	// Perm is the mode of a new file or directory.
	Perm fs.FileMode
	// Target is, for CreateSymlink and RemoveSymlink, what the link at
	// Path points to (a host path, stored as given).
	Target string
	// Inserted is, for a Modify that adds to a file the engine does not
	// own, exactly what it adds: the journal keeps it so that uninstall can
	// take out just that from a file someone else has edited since.
	Inserted []byte
	// Why says in a few words why the change is needed.
	Why string
}

// Diff returns the change as a unified diff, or a one-line summary for
// directories and symlinks.
func (c FileChange) Diff() string {
	switch c.Op {
	case CreateDir, RemoveDir:
		return fmt.Sprintf("%s %s\n", c.Op, c.Path)
	case CreateSymlink, RemoveSymlink:
		return fmt.Sprintf("%s %s -> %s\n", c.Op, c.Path, c.Target)
	}
	from, to := "a"+c.Path, "b"+c.Path
	switch c.Op {
	case Create:
		from = "/dev/null"
	case Delete:
		to = "/dev/null"
	}
	d := udiff.Unified(from, to, string(c.Before), string(c.After))
	if d == "" {
		return ""
	}
	return d
}

// PlanKind says what a Plan does.
type PlanKind int

// The two kinds of plan a config engine makes.
const (
	Install PlanKind = iota + 1
	Uninstall
)

func (k PlanKind) String() string {
	switch k {
	case Install:
		return "install"
	case Uninstall:
		return "uninstall"
	}
	return fmt.Sprintf("PlanKind(%d)", int(k))
}

// Plan is every change an install or uninstall would make to the runtime's
// configuration (config files, drop-ins, shim links), computed without
// writing anything: it can be printed, compared and tested before it is
// applied. Apply also keeps the engine's journal under
// /var/lib/kata-deploy, which is not among the Changes.
type Plan struct {
	Kind PlanKind
	// Engine names the engine that made the plan, e.g.
	// "containerd/kata-deploy" (its runtime and its name). Apply refuses a
	// plan another engine made with a *ForeignPlanError.
	Engine string
	// Handlers are, for an install plan, the names of the handlers it
	// registers, the default one first. The engine records them, so that
	// another install under the same engine name is refused rather than
	// silently replacing them.
	Handlers []string
	// Registered are, for an install plan, the handlers it registers in
	// full, in the order of Handlers. The engine records their shim and
	// config paths, so that a later install under the same engine name
	// that would repoint them (another prefix, say) is refused rather
	// than orphaning the first install's files.
	Registered []Handler
	Changes    []FileChange
	// Reads are the host paths the plan's changes were decided on, with
	// what each held: Apply refuses the plan (a *StalePlanError with Read
	// set) if any of them has changed since, as it does for the files the
	// plan writes.
	Reads []Read
	// Notes are things an admin should know that are not file changes,
	// such as a user edit that uninstall had to work around.
	Notes []string
}

// Read is one host path a plan read, and a digest of what it held.
type Read struct {
	Path string // host path, as the plan resolved it
	// Dir says Path is a directory the plan listed: the digest is of its
	// entry names, so that a file added or removed there is noticed.
	Dir bool
	// Digest is the hex SHA-256 of the file's content or the directory's
	// listing; "" when nothing was there.
	Digest string
}

// Empty reports whether applying the plan would change nothing.
func (p *Plan) Empty() bool { return p == nil || len(p.Changes) == 0 }

// Paths returns the host paths the plan touches, in order.
func (p *Plan) Paths() []string {
	if p == nil {
		return nil
	}
	out := make([]string, len(p.Changes))
	for i, c := range p.Changes {
		out[i] = c.Path
	}
	return out
}

// Diff returns the whole plan as a unified diff, one file after another,
// followed by its notes.
func (p *Plan) Diff() string {
	if p == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range p.Changes {
		b.WriteString(c.Diff())
	}
	for _, n := range p.Notes {
		b.WriteString("# note: " + n + "\n")
	}
	return b.String()
}

// ConfigEngine registers Kata handlers with a container runtime by editing
// its configuration under a host root. Both planning methods only read the
// host; Apply is the only one that writes.
type ConfigEngine interface {
	// PlanInstall returns the changes that register spec's handlers. On a
	// host where they are already registered the plan is empty.
	PlanInstall(ctx context.Context, spec Spec) (*Plan, error)
	// PlanUninstall returns the changes that undo every install this
	// engine applied on the host: files it created are removed and files
	// it edited get back their exact former bytes.
	PlanUninstall(ctx context.Context) (*Plan, error)
	// Apply carries out a plan this engine made (another's is a
	// *ForeignPlanError). It writes nothing once ctx has ended, checks
	// every file it writes or the plan read (Plan.Reads) still holds what
	// the plan saw (else a *StalePlanError), and on any failure puts back
	// what it had already changed. Applies on one host, of any engine, are
	// serialised, so that two never interleave their checks and writes.
	Apply(ctx context.Context, p *Plan) error
}
