package journal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/runtime"
)

const engine = "test"

func newRoot(t *testing.T) (*hostfs.Root, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := hostfs.New(dir)
	assert.NilError(t, err)
	return r, dir
}

// write puts content at the host path p under dir, making its directories.
func write(t *testing.T, dir, p, content string) {
	t.Helper()
	full := filepath.Join(dir, p)
	assert.NilError(t, os.MkdirAll(filepath.Dir(full), 0o755))
	assert.NilError(t, os.WriteFile(full, []byte(content), 0o640))
}

// tree describes everything under dir (mode, content, link target), so
// that two states of a host compare byte for byte.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		case d.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode().Perm())
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %q", fi.Mode().Perm(), data)
		}
		return nil
	})
	assert.NilError(t, err)
	return out
}

// noSurgery is the surgeon of a host nobody else edited: uninstall never
// needs it there.
func noSurgery(t *testing.T) Surgeon {
	return func(_ context.Context, p string, _ []byte, _ *File) (*Surgery, error) {
		t.Errorf("surgeon called for %s on a host nobody else edited", p)
		return nil, errors.New("unexpected surgery")
	}
}

func TestLoadMissingIsEmpty(t *testing.T) {
	root, dir := newRoot(t)
	before := tree(t, dir)
	j, err := Load(root, engine)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(j.Engine, engine))
	assert.Check(t, j.Files != nil, "a loaded journal's Files is ready to add to")
	assert.Check(t, j.Empty())
	// Loading writes nothing.
	assert.Check(t, is.DeepEqual(tree(t, dir), before))
}

func TestSaveLoadRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		j    *Journal
		// preexisting makes Dir before the save: the journal then records
		// Dir alone as its state directory, not its parents.
		preexisting   bool
		wantStateDirs []string
	}{
		{
			name: "everything recorded",
			j: &Journal{
				Engine: engine,
				Files: map[string]*File{
					"/etc/rt/config.toml":      {Before: []byte("version = 2\n"), After: []string{Digest([]byte("a")), Digest([]byte("b"))}, Inserted: []byte("[kata]\n")},
					"/etc/rt/conf.d/kata.toml": {Created: true, After: []string{Digest([]byte("c"))}},
				},
				Dirs:       []string{"/opt/kata", "/opt/kata/bin"},
				Links:      map[string]string{"/usr/local/bin/shim": "/opt/kata/bin/shim"},
				Handlers:   []string{"kata", "kata-qemu"},
				Registered: []Registered{{Name: "kata", ShimPath: "/opt/kata/bin/shim", ConfigPath: "/opt/kata/share/qemu.toml"}},
			},
			wantStateDirs: []string{"/var", "/var/lib", Dir},
		},
		{
			name:          "one file, state directory already there",
			j:             &Journal{Engine: engine, Files: map[string]*File{"/etc/x": {Created: true}}},
			preexisting:   true,
			wantStateDirs: []string{Dir},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newRoot(t)
			if tc.preexisting {
				assert.NilError(t, os.MkdirAll(filepath.Join(dir, Dir), 0o700))
			}
			assert.NilError(t, save(root, tc.j, nil))
			got, err := Load(root, engine)
			assert.NilError(t, err)
			want := *tc.j
			want.StateDirs = tc.wantStateDirs
			assert.Check(t, is.DeepEqual(got, &want))

			fi, err := os.Stat(filepath.Join(dir, PathFor(engine)))
			assert.NilError(t, err)
			assert.Check(t, is.Equal(fi.Mode().Perm(), fs.FileMode(0o600)), "the journal holds config bytes: root's only")
		})
	}
}

func TestSaveEmptyRemovesJournal(t *testing.T) {
	root, dir := newRoot(t)
	j := &Journal{Engine: engine, Files: map[string]*File{"/etc/x": {Created: true}}}
	assert.NilError(t, save(root, j, nil))
	delete(j.Files, "/etc/x")
	assert.NilError(t, save(root, j, nil))
	_, err := os.Stat(filepath.Join(dir, PathFor(engine)))
	assert.Check(t, errors.Is(err, fs.ErrNotExist), "an empty journal is no journal: %v", err)
}

func TestLoadRefusesCorrupt(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{name: "truncated", content: `{"engine": "test", "files": {`},
		{name: "not JSON", content: "engine = test\n"},
		{name: "files of the wrong type", content: `{"engine": "test", "files": []}`},
		{name: "empty", content: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newRoot(t)
			write(t, dir, PathFor(engine), tc.content)
			_, err := Load(root, engine)
			assert.Check(t, is.ErrorContains(err, "journal "+PathFor(engine)+" is corrupt"))
			// The plan made from it is refused too, not planned from
			// an empty journal that would forget what is installed.
			_, err = LoadRead(root, engine, &Reads{})
			assert.Check(t, is.ErrorContains(err, PathFor(engine)))
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	root, dir := newRoot(t)
	// A directory where the journal should be: not a missing journal.
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, PathFor(engine)), 0o700))
	_, err := Load(root, engine)
	assert.Check(t, is.ErrorContains(err, "read journal"))
	assert.Check(t, is.ErrorContains(err, PathFor(engine)))
}

func TestCheckInstall(t *testing.T) {
	const fix = "WithName"
	recorded := &Journal{
		Engine:   engine,
		Files:    map[string]*File{"/etc/rt/config.toml": {Before: []byte("x")}},
		Handlers: []string{"kata", "kata-qemu"},
		Registered: []Registered{
			{Name: "kata", ShimPath: "/opt/kata/bin/shim", ConfigPath: "/opt/kata/share/qemu.toml"},
			{Name: "kata-qemu", ShimPath: "/opt/kata/bin/shim", ConfigPath: "/opt/kata/share/qemu.toml"},
		},
	}
	kata := runtime.Handler{Name: "kata", ShimPath: "/opt/kata/bin/shim", ConfigPath: "/opt/kata/share/qemu.toml"}
	qemu := runtime.Handler{Name: "kata-qemu", ShimPath: "/opt/kata/bin/shim", ConfigPath: "/opt/kata/share/qemu.toml"}
	clh := runtime.Handler{Name: "kata-clh", ShimPath: "/opt/kata/bin/shim", ConfigPath: "/opt/kata/share/clh.toml"}
	moved := func(h runtime.Handler, shim, config string) runtime.Handler {
		h.ShimPath, h.ConfigPath = shim, config
		return h
	}

	tests := []struct {
		name     string
		j        *Journal
		handlers []runtime.Handler
		// wantErr lists what the refusal must name; none: accepted.
		wantErr []string
	}{
		{name: "nothing installed", j: &Journal{Engine: engine, Files: map[string]*File{}}, handlers: []runtime.Handler{clh}},
		{name: "no handlers", j: recorded},
		{name: "the same install again", j: recorded, handlers: []runtime.Handler{kata, qemu}},
		{name: "a handler added", j: recorded, handlers: []runtime.Handler{kata, qemu, clh}},
		{name: "a handler dropped", j: recorded, handlers: []runtime.Handler{kata}},
		{
			name: "another default handler", j: recorded, handlers: []runtime.Handler{clh, kata},
			wantErr: []string{PathFor(engine), "handlers kata, kata-qemu", "handlers kata-clh, kata", fix},
		},
		{
			name: "a handler repointed at another shim", j: recorded,
			handlers: []runtime.Handler{kata, moved(qemu, "/opt/other/bin/shim", qemu.ConfigPath)},
			wantErr:  []string{PathFor(engine), "handler kata-qemu", "/opt/other/bin/shim", fix},
		},
		{
			name: "the default handler under another prefix", j: recorded,
			handlers: []runtime.Handler{moved(kata, "/opt/other/bin/shim", "/opt/other/share/qemu.toml"), qemu},
			wantErr:  []string{PathFor(engine), "handler kata ", "/opt/other/share/qemu.toml", fix},
		},
		{
			name: "a handler repointed at another config", j: recorded,
			handlers: []runtime.Handler{kata, moved(qemu, qemu.ShimPath, "/opt/kata/share/clh.toml")},
			wantErr:  []string{"handler kata-qemu", "/opt/kata/share/clh.toml"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.j.CheckInstall(tc.handlers, fix)
			if len(tc.wantErr) == 0 {
				assert.Check(t, err)
				return
			}
			for _, want := range tc.wantErr {
				assert.Check(t, is.ErrorContains(err, want))
			}
		})
	}
}

// installPlan is an install that edits an existing config, adds a drop-in
// and a payload tree in new directories, and links the shim.
func installPlan(t *testing.T, root *hostfs.Root) *runtime.Plan {
	t.Helper()
	plan := &runtime.Plan{Kind: runtime.Install, Engine: engine, Handlers: []string{"kata"},
		Registered: []runtime.Handler{{Name: "kata", ShimPath: "/opt/kata/bin/shim", ConfigPath: "/opt/kata/share/qemu.toml"}}}
	dirs, err := PlanDirs(root, "/opt/kata/bin")
	assert.NilError(t, err)
	plan.Changes = append(plan.Changes, dirs...)
	dropins, err := PlanDirs(root, "/etc/rt/conf.d")
	assert.NilError(t, err)
	plan.Changes = append(plan.Changes, dropins...)
	plan.Changes = append(plan.Changes,
		runtime.FileChange{Op: runtime.Modify, Path: "/etc/rt/config.toml", Before: []byte("version = 2\n"),
			After: []byte("version = 2\nimports = [\"conf.d/kata.toml\"]\n"), Inserted: []byte("imports = [\"conf.d/kata.toml\"]\n")},
		runtime.FileChange{Op: runtime.Create, Path: "/etc/rt/conf.d/kata.toml", After: []byte("[kata]\n")},
		runtime.FileChange{Op: runtime.Create, Path: "/opt/kata/bin/shim", After: []byte("#!/bin/sh\n"), Perm: 0o755},
		runtime.FileChange{Op: runtime.CreateSymlink, Path: "/usr/local/bin/shim", Target: "/opt/kata/bin/shim"},
	)
	return plan
}

func TestApplyUninstallRestoresExactly(t *testing.T) {
	tests := []struct {
		name string
		// host makes the host as found before the install.
		host func(t *testing.T, dir string)
	}{
		{
			name: "bare host",
			host: func(t *testing.T, dir string) {
				write(t, dir, "/etc/rt/config.toml", "version = 2\n")
				assert.NilError(t, os.MkdirAll(filepath.Join(dir, "/usr/local/bin"), 0o755))
			},
		},
		{
			name: "state directory and drop-in directory already there",
			host: func(t *testing.T, dir string) {
				write(t, dir, "/etc/rt/config.toml", "version = 2\n")
				write(t, dir, "/etc/rt/conf.d/other.toml", "# someone else's\n")
				write(t, dir, "/var/lib/kata-deploy/unrelated", "keep\n")
				assert.NilError(t, os.MkdirAll(filepath.Join(dir, "/usr/local/bin"), 0o755))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			root, dir := newRoot(t)
			tc.host(t, dir)
			before := tree(t, dir)

			assert.NilError(t, Apply(ctx, root, engine, installPlan(t, root)))
			installed := tree(t, dir)
			assert.Check(t, is.Equal(installed["etc/rt/config.toml"], `file -rw-r----- "version = 2\nimports = [\"conf.d/kata.toml\"]\n"`))
			assert.Check(t, is.Equal(installed["opt/kata/bin/shim"], `file -rwxr-xr-x "#!/bin/sh\n"`))
			assert.Check(t, is.Equal(installed["usr/local/bin/shim"], "link -> /opt/kata/bin/shim"))
			j, err := Load(root, engine)
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(j.Handlers, []string{"kata"}))
			assert.Check(t, is.Equal(string(j.Files["/etc/rt/config.toml"].Before), "version = 2\n"))
			assert.Check(t, j.Files["/etc/rt/conf.d/kata.toml"].Created)

			plan, err := PlanUninstall(ctx, root, j, noSurgery(t))
			assert.NilError(t, err)
			assert.Check(t, is.Len(plan.Notes, 0))
			plan.Engine = engine
			assert.NilError(t, Apply(ctx, root, engine, plan))
			assert.Check(t, is.DeepEqual(tree(t, dir), before))

			// Uninstalling again finds nothing to do.
			j, err = Load(root, engine)
			assert.NilError(t, err)
			assert.Check(t, j.Empty())
		})
	}
}

func TestApplyRefusesStaleRead(t *testing.T) {
	const read = "/etc/rt/imported.toml"
	tests := []struct {
		name string
		// host makes the host before planning.
		host func(t *testing.T, dir string)
		// plan records what the plan read.
		plan func(t *testing.T, root *hostfs.Root, r *Reads)
		// change changes the host between plan and apply; nil: nothing.
		change func(t *testing.T, dir string)
		// wantPath is the file the refusal names; "": applied.
		wantPath string
		// empty plans no change, only reads.
		empty bool
	}{
		{
			name:   "unchanged",
			host:   func(t *testing.T, dir string) { write(t, dir, read, "a\n") },
			plan:   readFile(read),
			change: nil,
		},
		{
			name:     "read file changed",
			host:     func(t *testing.T, dir string) { write(t, dir, read, "a\n") },
			plan:     readFile(read),
			change:   func(t *testing.T, dir string) { write(t, dir, read, "b\n") },
			wantPath: read,
		},
		{
			name:     "read file changed, plan with no change of its own",
			host:     func(t *testing.T, dir string) { write(t, dir, read, "a\n") },
			plan:     readFile(read),
			change:   func(t *testing.T, dir string) { write(t, dir, read, "b\n") },
			wantPath: read,
			empty:    true,
		},
		{
			name:     "read file removed",
			host:     func(t *testing.T, dir string) { write(t, dir, read, "a\n") },
			plan:     readFile(read),
			change:   func(t *testing.T, dir string) { assert.NilError(t, os.Remove(filepath.Join(dir, read))) },
			wantPath: read,
		},
		{
			name:     "file read as missing appeared",
			host:     func(t *testing.T, dir string) { assert.NilError(t, os.MkdirAll(filepath.Join(dir, "/etc/rt"), 0o755)) },
			plan:     readFile(read),
			change:   func(t *testing.T, dir string) { write(t, dir, read, "a\n") },
			wantPath: read,
		},
		{
			name: "read file replaced by a directory",
			host: func(t *testing.T, dir string) { write(t, dir, read, "a\n") },
			plan: readFile(read),
			change: func(t *testing.T, dir string) {
				assert.NilError(t, os.Remove(filepath.Join(dir, read)))
				assert.NilError(t, os.Mkdir(filepath.Join(dir, read), 0o755))
			},
			wantPath: read,
		},
		{
			name: "listed directory gained a file",
			host: func(t *testing.T, dir string) { write(t, dir, "/etc/rt/conf.d/a.toml", "a\n") },
			plan: func(t *testing.T, root *hostfs.Root, r *Reads) {
				_, err := r.ReadDir(root, "/etc/rt/conf.d")
				assert.NilError(t, err)
			},
			change:   func(t *testing.T, dir string) { write(t, dir, "/etc/rt/conf.d/b.toml", "b\n") },
			wantPath: "/etc/rt/conf.d",
		},
		{
			name: "file in a listed directory edited",
			host: func(t *testing.T, dir string) { write(t, dir, "/etc/rt/conf.d/a.toml", "a\n") },
			plan: func(t *testing.T, root *hostfs.Root, r *Reads) {
				_, err := r.ReadDir(root, "/etc/rt/conf.d")
				assert.NilError(t, err)
			},
			// A listing is of names: the plan read no content there.
			change: func(t *testing.T, dir string) { write(t, dir, "/etc/rt/conf.d/a.toml", "b\n") },
		},
		{
			name: "journal the plan was made from changed by another apply",
			host: func(t *testing.T, dir string) { write(t, dir, PathFor(engine), `{"engine": "test", "files": {}}`) },
			plan: func(t *testing.T, root *hostfs.Root, r *Reads) {
				_, err := LoadRead(root, engine, r)
				assert.NilError(t, err)
			},
			change: func(t *testing.T, dir string) {
				write(t, dir, PathFor(engine), `{"engine": "test", "files": {"/etc/x": {"created": true}}}`)
			},
			wantPath: PathFor(engine),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			root, dir := newRoot(t)
			tc.host(t, dir)
			var reads Reads
			tc.plan(t, root, &reads)
			plan := &runtime.Plan{Kind: runtime.Install, Engine: engine, Reads: reads.List()}
			if !tc.empty {
				plan.Changes = []runtime.FileChange{{Op: runtime.Create, Path: "/etc/rt/new.toml", After: []byte("new\n")}}
			}
			if tc.change != nil {
				tc.change(t, dir)
			}
			before := tree(t, dir)

			err := Apply(ctx, root, engine, plan)
			if tc.wantPath == "" {
				assert.NilError(t, err)
				return
			}
			var stale *runtime.StalePlanError
			assert.Assert(t, errors.As(err, &stale), "got %v", err)
			assert.Check(t, is.Equal(stale.Path, tc.wantPath))
			assert.Check(t, stale.Read)
			assert.Check(t, errors.Is(err, runtime.ErrStalePlan))
			assert.Check(t, is.ErrorContains(err, tc.wantPath))
			// A refused plan writes nothing: no change, no journal, no
			// lock file or state directory left.
			assert.Check(t, is.DeepEqual(tree(t, dir), before))
		})
	}
}

func readFile(p string) func(t *testing.T, root *hostfs.Root, r *Reads) {
	return func(t *testing.T, root *hostfs.Root, r *Reads) {
		t.Helper()
		_, err := r.ReadFile(root, p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

func TestReadsRecordsEachPathOnce(t *testing.T) {
	root, dir := newRoot(t)
	write(t, dir, "/etc/a", "first\n")
	var r Reads
	_, err := r.ReadFile(root, "/etc/a")
	assert.NilError(t, err)
	write(t, dir, "/etc/a", "second\n")
	// Read again through another spelling of the path: still the first.
	_, err = r.ReadFile(root, "/etc//a")
	assert.NilError(t, err)
	ok, err := r.Exists(root, "/etc/missing")
	assert.NilError(t, err)
	assert.Check(t, !ok)
	r.Add(runtime.Read{Path: "/etc/a/", Digest: "other"})

	want := []runtime.Read{{Path: "/etc/a", Digest: Digest([]byte("first\n"))}, {Path: "/etc/missing"}}
	assert.Check(t, is.DeepEqual(r.List(), want))
	// What it recorded first is what CheckReads holds the host to.
	err = CheckReads(root, r.List())
	assert.Check(t, is.ErrorContains(err, "/etc/a"))
	assert.Check(t, is.ErrorContains(err, "re-plan"))
}
