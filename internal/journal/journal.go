// Package journal applies config-engine plans to a host root and remembers,
// on the host, what each engine created and the exact former bytes of every
// file it edited, so that uninstall can put them back byte for byte.
//
// The journal is written before any change it describes, so a crash between
// the two leaves a journal that describes more than happened; planning from
// it stays correct because every file's state is checked again, never
// assumed.
package journal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// Dir is the host directory that holds the journals.
const Dir = "/var/lib/kata-deploy"

// File is what the journal knows about one host file.
type File struct {
	// Created says the engine created the file; uninstall deletes it.
	Created bool `json:"created,omitempty"`
	// Before is the file's content before the engine first edited it.
	Before []byte `json:"before,omitempty"`
	// After holds digests of content the engine wrote. A file still
	// holding one of them has not been edited by anyone else since.
	After []string `json:"after,omitempty"`
	// Inserted is what the engine's last edit of a file it did not create
	// inserted (see runtime.FileChange.Inserted), so that uninstall can
	// take out exactly that from a file someone edited since.
	Inserted []byte `json:"inserted,omitempty"`
}

// Journal is one engine's record on one host.
type Journal struct {
	Engine string           `json:"engine"`
	Files  map[string]*File `json:"files"`
	// Dirs are directories the engine created, outermost first.
	Dirs []string `json:"dirs,omitempty"`
	// Links are the symlinks the engine created: host path -> the target
	// it gave the link. Uninstall removes a link only while it still
	// points there; one someone has changed since is theirs.
	Links map[string]string `json:"links,omitempty"`
	// StateDirs are directories made to hold the journal itself.
	StateDirs []string `json:"stateDirs,omitempty"`
	// Handlers are the handlers the last install registered, the default
	// one first: another install under the same engine name is refused
	// (see CheckInstall).
	Handlers []string `json:"handlers,omitempty"`
	// Registered are the handlers the last install registered with the
	// paths they point at, so that an install under the same engine name
	// that would repoint one is refused (see CheckInstall).
	Registered []Registered `json:"registered,omitempty"`
}

// Registered is one handler as an install registered it.
type Registered struct {
	Name       string `json:"name"`
	ShimPath   string `json:"shimPath"`
	ConfigPath string `json:"configPath"`
}

// PathFor returns the host path of an engine's journal.
func PathFor(engine string) string { return path.Join(Dir, engine+".json") }

// Load reads an engine's journal; a missing one is empty.
func Load(root *hostfs.Root, engine string) (*Journal, error) {
	return LoadRead(root, engine, &Reads{})
}

// LoadRead is Load for a plan: it records the journal in reads, so that a
// plan made from it is refused once another apply has changed it.
func LoadRead(root *hostfs.Root, engine string, reads *Reads) (*Journal, error) {
	j := &Journal{Engine: engine, Files: map[string]*File{}}
	// Not ReadFile's size limit: a journal holds whole config files.
	data, err := root.ReadFile(PathFor(engine))
	switch {
	case err == nil:
		reads.add(runtime.Read{Path: PathFor(engine), Digest: Digest(data)})
	case errors.Is(err, fs.ErrNotExist):
		reads.add(runtime.Read{Path: PathFor(engine)})
	}
	if errors.Is(err, fs.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	if err := json.Unmarshal(data, j); err != nil {
		return nil, fmt.Errorf("journal %s is corrupt: %w", PathFor(engine), err)
	}
	if j.Files == nil {
		j.Files = map[string]*File{}
	}
	return j, nil
}

// File returns what the journal records of the host path p, under the
// path p resolves to or (from a journal written before paths were
// resolved) under p itself; nil if nothing.
func (j *Journal) File(root *hostfs.Root, p string) *File {
	if resolved, err := root.Resolve(p); err == nil && j.Files[resolved] != nil {
		return j.Files[resolved]
	}
	return j.Files[p]
}

// ResolvePaths rewrites each change's path to what the host resolves it
// to, so that what is written, recorded and later removed is the file or
// directory itself, never a symlink of the user's on the way to it. A
// symlink change's own path is the link, so only its directory is
// resolved.
func ResolvePaths(root *hostfs.Root, changes []runtime.FileChange) error {
	for i := range changes {
		resolve := root.Resolve
		if isLinkOp(changes[i].Op) {
			resolve = func(p string) (string, error) { return ResolveLink(root, p) }
		}
		p, err := resolve(changes[i].Path)
		if err != nil {
			return err
		}
		changes[i].Path = p
	}
	return nil
}

// ResolveLink returns the host path of the symlink p with the directories
// on the way resolved as the host resolves them, and p's last element
// left as it is (it is the link, not what the link points at).
func ResolveLink(root *hostfs.Root, p string) (string, error) {
	p = path.Clean("/" + p)
	dir, err := root.Resolve(path.Dir(p))
	if err != nil {
		return "", err
	}
	return path.Join(dir, path.Base(p)), nil
}

func isLinkOp(op runtime.Op) bool { return op == runtime.CreateSymlink || op == runtime.RemoveSymlink }

// LinkState is what is at a host path where the engine wants a symlink.
type LinkState int

// The states LinkAt reports.
const (
	LinkMissing LinkState = iota // nothing is there
	LinkSymlink                  // a symlink (its target is returned too)
	LinkOther                    // a file, directory or anything else
)

// LinkAt reports what is at the host path p, not following p itself, and,
// for a symlink, its target.
func LinkAt(root *hostfs.Root, p string) (LinkState, string, error) {
	target, err := root.Readlink(p)
	switch {
	case err == nil:
		return LinkSymlink, target, nil
	case errors.Is(err, fs.ErrNotExist):
		return LinkMissing, "", nil
	case errors.Is(err, hostfs.ErrNotSymlink):
		return LinkOther, "", nil
	}
	return 0, "", err
}

// OwnsLink reports whether the symlink at host path p is one the engine
// made and nobody has changed since: it points at target, and the journal
// says the engine pointed it there.
func (j *Journal) OwnsLink(p, target string) bool {
	recorded, ok := j.Links[p]
	return ok && recorded == target
}

// Empty reports whether the journal records nothing.
func (j *Journal) Empty() bool { return len(j.Files) == 0 && len(j.Dirs) == 0 && len(j.Links) == 0 }

// Digest returns the digest the journal keeps for content.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Ours reports whether content is something the engine wrote to p.
func (j *Journal) Ours(p string, content []byte) bool {
	f := j.Files[p]
	return f != nil && slices.Contains(f.After, Digest(content))
}

// SavedDir is the host directory where uninstall keeps a copy of a file
// whose bytes it must drop although someone other than kata-deploy wrote
// some of them. No runtime reads it, unlike a copy in a drop-in directory.
const SavedDir = Dir + "/saved"

// MaxFileSize is the largest config file the journal reads back: the
// largest the engines read, so that uninstall reads whatever install did.
const MaxFileSize = tomltext.MaxConfigSize

// Surgery is what a Surgeon makes of a file someone changed since the
// engine edited it.
type Surgery struct {
	// After is the file without the engine's edit.
	After []byte
	// Dropped says After also lacks bytes someone else wrote (say, a line
	// added inside the engine's own block): the file as it is now is
	// saved first, and the uninstall says where.
	Dropped string
}

// Surgeon takes an engine's own edit out of a file that someone else has
// changed since, for the uninstall where the journal's former bytes would
// throw away the other party's change. It returns an error, and uninstall
// changes nothing, when it cannot tell its edit apart exactly.
type Surgeon func(ctx context.Context, p string, current []byte, f *File) (*Surgery, error)

// PlanUninstall returns the changes that undo everything the journal
// records: files the engine created are deleted, files it edited get their
// former bytes back (or, if edited by someone else since, lose only the
// engine's own edit), symlinks it made are removed while they still point
// where it pointed them (one someone changed is left, with a note), and
// directories it created are removed when empty.
// Bytes someone else wrote that must go anyway (an edit of the engine's own
// file or block) are first copied under SavedDir, and a note says so.
//
// Recorded paths are resolved as the host resolves them, so that a symlink
// of the user's on the way (which an older journal may name) is never
// what gets removed.
func PlanUninstall(ctx context.Context, root *hostfs.Root, j *Journal, surgeon Surgeon) (*runtime.Plan, error) {
	plan := &runtime.Plan{Kind: runtime.Uninstall}
	var reads Reads
	defer func() { plan.Reads = reads.List() }()
	stamp := time.Now().UTC().Format("20060102T150405Z")
	save := func(p string, current []byte, what string) error {
		dst := path.Join(SavedDir, p) + "." + stamp
		dirs, err := PlanDirs(root, path.Dir(dst))
		if err != nil {
			return err
		}
		plan.Changes = append(plan.Changes, dirs...)
		plan.Changes = append(plan.Changes, runtime.FileChange{Op: runtime.Create, Path: dst, After: current, Perm: 0o600, Why: "keep " + p + " as it was before uninstall"})
		plan.Notes = append(plan.Notes, fmt.Sprintf("%s: %s; uninstall removes them, and a copy of the file as it was is kept at %s", p, what, dst))
		return nil
	}
	for _, recorded := range slices.Sorted(maps.Keys(j.Files)) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f := j.Files[recorded]
		p, err := root.Resolve(recorded)
		if err != nil {
			return nil, err
		}
		current, err := reads.ReadFile(root, p)
		if errors.Is(err, fs.ErrNotExist) {
			if !f.Created {
				plan.Notes = append(plan.Notes, fmt.Sprintf("%s was removed by someone else; nothing to restore", p))
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		switch {
		case f.Created:
			if !j.Ours(recorded, current) && len(f.After) > 0 {
				if err := save(p, current, "someone edited this file kata-deploy wrote"); err != nil {
					return nil, err
				}
			}
			plan.Changes = append(plan.Changes, runtime.FileChange{Op: runtime.Delete, Path: p, Before: current, Why: "created by kata-deploy"})
		case bytes.Equal(current, f.Before):
			// Never changed, or already restored.
		case j.Ours(recorded, current):
			plan.Changes = append(plan.Changes, runtime.FileChange{Op: runtime.Modify, Path: p, Before: current, After: f.Before, Why: "restore the bytes it had before kata-deploy"})
		default:
			s, err := surgeon(ctx, p, current, f)
			if err != nil {
				return nil, fmt.Errorf("%s was changed since kata-deploy edited it, and kata-deploy's edit cannot be told apart from the change, so nothing was uninstalled: %w", p, err)
			}
			if s.Dropped != "" {
				if err := save(p, current, s.Dropped); err != nil {
					return nil, err
				}
			} else {
				plan.Notes = append(plan.Notes, fmt.Sprintf("%s was changed since kata-deploy edited it: only kata-deploy's own edit is taken out", p))
			}
			if !bytes.Equal(s.After, current) {
				plan.Changes = append(plan.Changes, runtime.FileChange{Op: runtime.Modify, Path: p, Before: current, After: s.After, Why: "take out kata-deploy's edit"})
			}
		}
	}
	handover, err := planHandover(ctx, root, j, surgeon, &reads)
	if err != nil {
		return nil, err
	}
	plan.Changes = append(plan.Changes, handover...)
	for _, recorded := range slices.Sorted(maps.Keys(j.Links)) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		target := j.Links[recorded]
		p, err := ResolveLink(root, recorded)
		if err != nil {
			return nil, err
		}
		state, current, err := LinkAt(root, p)
		if err != nil {
			return nil, err
		}
		switch {
		case state == LinkMissing:
			// Never made (a run killed before it), or removed already.
		case state == LinkSymlink && current == target:
			plan.Changes = append(plan.Changes, runtime.FileChange{Op: runtime.RemoveSymlink, Path: p, Target: target, Why: "created by kata-deploy"})
		case state == LinkSymlink:
			plan.Notes = append(plan.Notes, fmt.Sprintf("%s now points to %s, not to %s where kata-deploy pointed it: someone replaced it, so it is left as it is", p, current, target))
		default:
			plan.Notes = append(plan.Notes, fmt.Sprintf("%s is no longer the symlink to %s that kata-deploy made: someone replaced it, so it is left as it is", p, target))
		}
	}
	for i := len(j.Dirs) - 1; i >= 0; i-- {
		d, err := root.Resolve(j.Dirs[i])
		if err != nil {
			return nil, err
		}
		ok, err := root.Exists(d)
		if err != nil {
			return nil, err
		}
		if ok {
			plan.Changes = append(plan.Changes, runtime.FileChange{Op: runtime.RemoveDir, Path: d, Why: "created by kata-deploy"})
		}
	}
	return plan, nil
}

// planHandover returns the changes that take this engine's edit out of the
// former bytes another engine's journal keeps of a file both edited: that
// install edited the file after this one, so the bytes it would put back
// hold this one's edit. Without them, uninstalling the first install
// before the second left the first one's edit (an emptied imports list)
// for good. A journal the surgeon cannot take the edit out of is left as
// it is.
func planHandover(ctx context.Context, root *hostfs.Root, j *Journal, surgeon Surgeon, reads *Reads) ([]runtime.FileChange, error) {
	// Not a read of the plan's: Dir holds the apply lock file when the
	// plan is applied. The journals themselves are.
	entries, err := root.ReadDir(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []runtime.FileChange
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || name == j.Engine || !e.Type().IsRegular() {
			continue
		}
		p := path.Join(Dir, e.Name())
		data, err := root.ReadFileLimit(p, MaxFileSize)
		if err != nil {
			continue
		}
		var o Journal
		if json.Unmarshal(data, &o) != nil || o.Engine != name {
			// Not a journal (an installer's record, which it rewrites
			// between plan and apply): not a read of the plan's either.
			continue
		}
		reads.Add(runtime.Read{Path: p, Digest: Digest(data)})
		changed := false
		for recorded, f := range j.Files {
			of := o.Files[recorded]
			if f.Created || of == nil || of.Created || bytes.Equal(of.Before, f.Before) {
				continue
			}
			s, err := surgeon(ctx, recorded, of.Before, f)
			if err != nil || s.Dropped != "" || bytes.Equal(s.After, of.Before) {
				continue
			}
			of.Before = s.After
			changed = true
		}
		if !changed {
			continue
		}
		after, err := json.MarshalIndent(&o, "", "  ")
		if err != nil {
			return nil, err
		}
		out = append(out, runtime.FileChange{Op: runtime.Modify, Path: p, Before: data, After: append(after, '\n'), Perm: 0o600,
			Why: "take " + j.Engine + "'s edit out of what " + name + " restores"})
	}
	return out, nil
}

// handOverStateDirs gives dirs, the state directories an apply of engine
// made or its uninstall would remove, to every other journal that records
// fewer: an install that found Dir made by another apply that had not (or
// never, being refused) saved its journal records only Dir, and the
// directories above it would outlive both installs if the one that made
// them went first. The caller holds the apply lock.
func handOverStateDirs(root *hostfs.Root, engine string, dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	entries, err := root.ReadDir(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || name == engine || !e.Type().IsRegular() {
			continue
		}
		data, err := root.ReadFile(path.Join(Dir, e.Name()))
		if err != nil {
			continue
		}
		var o Journal
		if json.Unmarshal(data, &o) != nil || o.Engine != name || len(o.StateDirs) >= len(dirs) {
			continue // not a journal, or it knows as much
		}
		o.StateDirs = dirs
		out, err := json.MarshalIndent(&o, "", "  ")
		if err != nil {
			return err
		}
		if err := root.WriteFile(path.Join(Dir, e.Name()), append(out, '\n'), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// ChangedError says a file no longer holds what a plan saw; the plan is
// stale and must be made again. It is the public runtime.StalePlanError.
type ChangedError = runtime.StalePlanError

// CheckName refuses an engine name that is not safe in the file names it
// becomes (the journal, drop-ins): 1 to 64 letters, digits, '.', '_' and
// '-', starting with a letter or digit.
func CheckName(name string) error {
	ok := name != "" && len(name) <= 64
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._-", r)) {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("engine name %q: want 1 to 64 letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// CheckInstall refuses to plan an install that would replace, without a
// word, what another install under the same engine name registered: one
// whose default handler is not the one the journal records, or that points
// a handler the journal records at another shim or Kata config (another
// prefix, say, which would leave the first install's files orphaned).
// Adding or dropping a handler of the same install is not refused: that
// is how an install's shim list changes. fix says how to give this install
// an engine name of its own (e.g. "containerd.WithName").
func (j *Journal) CheckInstall(handlers []runtime.Handler, fix string) error {
	if len(handlers) == 0 || j.Empty() {
		return nil
	}
	if len(j.Handlers) > 0 && j.Handlers[0] != handlers[0].Name {
		return fmt.Errorf("%s records another install under this engine name (handlers %s): installing handlers %s with it would replace them; give each install its own engine name (%s), or uninstall the other first",
			PathFor(j.Engine), strings.Join(j.Handlers, ", "), handlerNames(handlers), fix)
	}
	for _, h := range handlers {
		for _, r := range j.Registered {
			if r.Name == h.Name && (r.ShimPath != h.ShimPath || r.ConfigPath != h.ConfigPath) {
				return fmt.Errorf("%s records handler %s with shim %s and config %s: installing it with shim %s and config %s under the same engine name would repoint it and leave the first install's files behind; uninstall the first install, or give this one its own engine name (%s)",
					PathFor(j.Engine), h.Name, r.ShimPath, r.ConfigPath, h.ShimPath, h.ConfigPath, fix)
			}
		}
	}
	return nil
}

func handlerNames(hs []runtime.Handler) string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	return strings.Join(names, ", ")
}

// CheckPlan refuses a plan that engine id did not make.
func CheckPlan(p *runtime.Plan, id string) error {
	if p == nil {
		return errors.New("no plan to apply")
	}
	if p.Engine != id {
		return &runtime.ForeignPlanError{Made: p.Engine, Applier: id}
	}
	return nil
}

// Apply carries out plan for engine on the host. It writes nothing once
// ctx has ended. Holding the apply lock (LockPath) throughout, it first
// checks that every file the plan read or writes still holds what the
// plan saw, then records the plan in the journal, then makes the changes
// in order; if one fails, it puts back those already made and the journal
// as it was, so that a refused install leaves nothing behind. Applying an
// uninstall plan ends by deleting the journal.
func Apply(ctx context.Context, root *hostfs.Root, engine string, plan *runtime.Plan) (err error) {
	// Nothing, not even the journal, is written once ctx has ended: a
	// journal saved for changes never made would date a config write
	// (LastWrite) that did not happen.
	if err := ctx.Err(); err != nil {
		return err
	}
	if plan.Empty() && plan.Kind != runtime.Uninstall {
		// Nothing to write, so nothing to serialise (nor a lock file to
		// make on a host that has none): the plan must only still hold.
		return CheckReads(root, plan.Reads)
	}
	made, unlock, err := lock(ctx, root)
	if err != nil {
		return err
	}
	var stateDirs []string
	defer func() {
		// Only once the lock file is gone from Dir can the state
		// directories this apply made, or an uninstall emptied, go. Both
		// are chains of directories ending at Dir, outermost first: the
		// longer one holds the other.
		dirs := stateDirs
		if len(made) > len(dirs) {
			dirs = made
		}
		// Still under the lock: the journals left in Dir must know them.
		if herr := handOverStateDirs(root, engine, dirs); herr != nil && err == nil {
			err = herr
		}
		if uerr := unlock(dirs); uerr != nil && err == nil {
			err = uerr
		}
	}()
	stateDirs, err = apply(ctx, root, engine, plan, made)
	return err
}

// apply is Apply under the lock. It returns, for an uninstall, the state
// directories to remove once they are empty.
func apply(ctx context.Context, root *hostfs.Root, engine string, plan *runtime.Plan, made []string) ([]string, error) {
	// A run killed while writing the journal left its temporary.
	root.RemoveTemps(PathFor(engine))
	if err := CheckReads(root, plan.Reads); err != nil {
		return nil, err
	}
	// A link the plan removes before making it anew (its shim moved) may
	// be there when the new one is checked.
	removed := map[string]string{}
	for _, c := range plan.Changes {
		if err := checkPrecondition(root, c, removed); err != nil {
			return nil, err
		}
		if c.Op == runtime.RemoveSymlink {
			removed[c.Path] = c.Target
		}
	}
	j, err := Load(root, engine)
	if err != nil {
		return nil, err
	}
	for p := range j.Links {
		// Likewise a temporary of a symlink a killed run was making.
		root.RemoveTemps(p)
	}
	// The journal as it was, to put back if the install fails.
	former, err := root.ReadFile(PathFor(engine))
	hadJournal := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	restoreJournal := func() error {
		if hadJournal {
			return root.WriteFile(PathFor(engine), former, 0o600)
		}
		return root.Remove(PathFor(engine))
	}
	if plan.Kind == runtime.Install {
		if err := record(root, j, plan, made); err != nil {
			if rerr := restoreJournal(); rerr != nil {
				return nil, fmt.Errorf("%w; putting back the journal also failed: %w", err, rerr)
			}
			return nil, err
		}
	}

	var undo []func() error
	if plan.Kind == runtime.Install {
		undo = append(undo, restoreJournal)
	}
	rollback := func(cause error) error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w; rolling back also failed: %w", cause, errors.Join(errs...))
		}
		return cause
	}
	for _, c := range plan.Changes {
		if err := ctx.Err(); err != nil {
			return nil, rollback(err)
		}
		u, err := applyChange(root, j, c)
		if err != nil {
			return nil, rollback(fmt.Errorf("%s %s: %w", c.Op, c.Path, err))
		}
		undo = append(undo, u)
	}

	switch plan.Kind {
	case runtime.Install:
		if err := prune(root, j); err != nil {
			return nil, err
		}
		return nil, save(root, j, made)
	case runtime.Uninstall:
		if err := root.Remove(PathFor(engine)); err != nil {
			return nil, err
		}
		// The journal's directories go too once no engine needs them.
		if len(j.StateDirs) == 0 {
			return []string{Dir}, nil
		}
		return j.StateDirs, nil
	}
	return nil, nil
}

func checkPrecondition(root *hostfs.Root, c runtime.FileChange, removedLinks map[string]string) error {
	switch c.Op {
	case runtime.Create:
		ok, err := root.Exists(c.Path)
		if err != nil {
			return err
		}
		if ok {
			return &ChangedError{Path: c.Path}
		}
	case runtime.Modify, runtime.Delete:
		current, err := root.ReadFileLimit(c.Path, MaxFileSize)
		if err != nil {
			return err
		}
		if !bytes.Equal(current, c.Before) {
			return &ChangedError{Path: c.Path}
		}
	case runtime.CreateSymlink:
		// The plan saw nothing there; whatever is there now is someone
		// else's and must be kept.
		state, current, err := LinkAt(root, c.Path)
		if err != nil {
			return err
		}
		gone, ok := removedLinks[c.Path]
		if state != LinkMissing && !(ok && state == LinkSymlink && current == gone) {
			return &ChangedError{Path: c.Path}
		}
	case runtime.RemoveSymlink:
		state, target, err := LinkAt(root, c.Path)
		if err != nil {
			return err
		}
		if state != LinkSymlink || target != c.Target {
			return &ChangedError{Path: c.Path}
		}
	}
	return nil
}

// record adds what an install plan will do to the journal and saves it, so
// the journal is on disk before the first change.
func record(root *hostfs.Root, j *Journal, plan *runtime.Plan, made []string) error {
	if len(plan.Handlers) > 0 {
		j.Handlers = plan.Handlers
	}
	if len(plan.Registered) > 0 {
		j.Registered = j.Registered[:0]
		for _, h := range plan.Registered {
			j.Registered = append(j.Registered, Registered{Name: h.Name, ShimPath: h.ShimPath, ConfigPath: h.ConfigPath})
		}
	}
	for _, c := range plan.Changes {
		if c.Path == Dir || strings.HasPrefix(c.Path, Dir+"/") {
			// A copy saved for the user (see PlanUninstall) is theirs.
			continue
		}
		f := j.Files[c.Path]
		switch c.Op {
		case runtime.Create:
			if f == nil {
				f = &File{Created: true}
				j.Files[c.Path] = f
			}
		case runtime.Modify:
			if f == nil {
				f = &File{Before: c.Before}
				j.Files[c.Path] = f
			}
			if !f.Created {
				f.Inserted = c.Inserted
			}
		case runtime.CreateDir:
			if !slices.Contains(j.Dirs, c.Path) {
				j.Dirs = append(j.Dirs, c.Path)
			}
			continue
		case runtime.CreateSymlink:
			if j.Links == nil {
				j.Links = map[string]string{}
			}
			j.Links[c.Path] = c.Target
			continue
		default:
			continue
		}
		// Keep the digest of what was there if it was ours too, so a crash
		// before this write still recognises the file as ours.
		d := Digest(c.After)
		if !slices.Contains(f.After, d) {
			f.After = append(f.After, d)
		}
		if n := len(f.After); n > 4 {
			f.After = f.After[n-4:]
		}
	}
	if err := shareDirs(root, j, plan); err != nil {
		return err
	}
	return save(root, j, made)
}

// others loads the other journals in Dir (and any other JSON file there
// that reads as one), for what they record of shared directories.
func others(root *hostfs.Root, engine string) ([]*Journal, error) {
	entries, err := root.ReadDir(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Journal
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || name == engine || !e.Type().IsRegular() {
			continue
		}
		var o Journal
		data, err := root.ReadFileLimit(path.Join(Dir, e.Name()), MaxFileSize)
		if err != nil || json.Unmarshal(data, &o) != nil {
			continue // not a journal, or not readable: nothing shared
		}
		out = append(out, &o)
	}
	return out, nil
}

// shareDirs makes j record, as its own, the directories on the way to what
// the plan creates that another journal records it created. Whichever
// install is uninstalled first then finds them in use and leaves them, and
// the last one removes them: without this, the one that made them, if
// uninstalled first, left them to an install that did not know them, and
// they outlived both.
func shareDirs(root *hostfs.Root, j *Journal, plan *runtime.Plan) error {
	ots, err := others(root, j.Engine)
	if err != nil || len(ots) == 0 {
		return err
	}
	shared := map[string]bool{}
	for _, o := range ots {
		for _, d := range o.Dirs {
			shared[d] = true
		}
	}
	for _, c := range plan.Changes {
		switch c.Op {
		case runtime.Create, runtime.CreateDir, runtime.CreateSymlink:
		default:
			continue
		}
		for d := path.Dir(c.Path); d != "/" && d != "."; d = path.Dir(d) {
			if shared[d] && !slices.Contains(j.Dirs, d) {
				j.Dirs = append(j.Dirs, d)
			}
		}
	}
	// Outermost first, as uninstall removes them innermost first.
	slices.SortStableFunc(j.Dirs, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	return nil
}

// prune forgets files that are back to their former state, files the
// engine made that are gone, and symlinks that are gone or that someone
// has pointed elsewhere (theirs now), once the changes are made.
func prune(root *hostfs.Root, j *Journal) error {
	for p, target := range j.Links {
		state, current, err := LinkAt(root, p)
		if err != nil {
			return err
		}
		if state != LinkSymlink || current != target {
			delete(j.Links, p)
		}
	}
	for p, f := range j.Files {
		current, err := root.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && f.Created:
			delete(j.Files, p)
		case err == nil && !f.Created && bytes.Equal(current, f.Before):
			delete(j.Files, p)
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	return nil
}

// save writes the journal. made are the state directories the apply lock
// had to make for Dir.
func save(root *hostfs.Root, j *Journal, made []string) error {
	if j.Empty() {
		return root.Remove(PathFor(j.Engine))
	}
	m, err := root.MkdirAll(Dir, 0o700)
	if err != nil {
		return err
	}
	if len(m) > 0 {
		made = m
	}
	switch {
	case len(made) > 0:
		j.StateDirs = made
	case len(j.StateDirs) == 0:
		// Another engine's journal made Dir and records the directories
		// it made for it: the last journal to go must remove them all,
		// whichever it is.
		ots, err := others(root, j.Engine)
		if err != nil {
			return err
		}
		for _, o := range ots {
			if len(o.StateDirs) > len(j.StateDirs) {
				j.StateDirs = o.StateDirs
			}
		}
		if len(j.StateDirs) > 0 {
			break
		}
		// Dir was there already without this engine's journal: left by a
		// run killed between making it and writing the journal, or shared
		// with another engine. Uninstall removes it only once it is empty
		// either way (and falls back to it when nothing is recorded), so
		// the record says so: a re-run after a crash writes the journal a
		// clean run writes.
		j.StateDirs = []string{Dir}
	}
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return root.WriteFile(PathFor(j.Engine), append(data, '\n'), 0o600)
}

// applyChange makes one change and returns how to undo it.
func applyChange(root *hostfs.Root, j *Journal, c runtime.FileChange) (func() error, error) {
	perm := c.Perm
	switch c.Op {
	case runtime.Create:
		if perm == 0 {
			perm = 0o644
		}
		if err := root.WriteFile(c.Path, c.After, perm); err != nil {
			return nil, err
		}
		return func() error { return root.Remove(c.Path) }, nil
	case runtime.Modify:
		if perm == 0 {
			perm = 0o644
		}
		if err := root.WriteFile(c.Path, c.After, perm); err != nil {
			return nil, err
		}
		return func() error { return root.WriteFile(c.Path, c.Before, perm) }, nil
	case runtime.Delete:
		if err := root.Remove(c.Path); err != nil {
			return nil, err
		}
		return func() error { return root.WriteFile(c.Path, c.Before, 0o644) }, nil
	case runtime.CreateDir:
		if perm == 0 {
			perm = 0o755
		}
		created, err := root.MkdirAll(c.Path, perm)
		if err != nil {
			return nil, err
		}
		return func() error {
			for i := len(created) - 1; i >= 0; i-- {
				if err := root.Remove(created[i]); err != nil {
					return err
				}
			}
			return nil
		}, nil
	case runtime.RemoveDir:
		entries, err := root.ReadDir(c.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return func() error { return nil }, nil
		}
		if err != nil {
			return nil, err
		}
		if len(entries) > 0 {
			// Someone else's files live there now: keep it.
			return func() error { return nil }, nil
		}
		if err := root.Remove(c.Path); err != nil {
			return nil, err
		}
		j.Dirs = slices.DeleteFunc(j.Dirs, func(d string) bool { return d == c.Path })
		return func() error { _, err := root.MkdirAll(c.Path, 0o755); return err }, nil
	case runtime.CreateSymlink:
		if err := root.Symlink(c.Target, c.Path); err != nil {
			return nil, err
		}
		return func() error { return removeOwnLink(root, c.Path, c.Target) }, nil
	case runtime.RemoveSymlink:
		if err := removeOwnLink(root, c.Path, c.Target); err != nil {
			return nil, err
		}
		return func() error { return root.Symlink(c.Target, c.Path) }, nil
	}
	return nil, fmt.Errorf("unknown change %v", c.Op)
}

// removeOwnLink removes the symlink p if it still points at target, and
// leaves anything else there alone.
func removeOwnLink(root *hostfs.Root, p, target string) error {
	state, current, err := LinkAt(root, p)
	if err != nil {
		return err
	}
	if state != LinkSymlink || current != target {
		return nil
	}
	return root.Remove(p)
}

// PlanDirs returns a CreateDir change for each missing directory on the way
// to the host directory dir, outermost first, so that uninstall removes
// exactly the directories install made. Symlinks in dir are resolved
// first: what gets created, and later removed, is the directory the link
// points to, never the user's link.
func PlanDirs(root *hostfs.Root, dir string) ([]runtime.FileChange, error) {
	resolved, err := root.Resolve(dir)
	if err != nil {
		return nil, err
	}
	var out []runtime.FileChange
	for d := resolved; d != "/"; d = path.Dir(d) {
		ok, err := root.Exists(d)
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		out = append([]runtime.FileChange{{Op: runtime.CreateDir, Path: d, Perm: 0o755}}, out...)
	}
	return out, nil
}

// LastWrite returns when an engine last changed the host: the journal is
// saved after every change it describes. It is zero when the engine has
// nothing installed.
func LastWrite(root *hostfs.Root, engine string) (time.Time, error) {
	fi, err := root.Stat(PathFor(engine))
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}
