package noderecord

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/journal"
)

func newRoot(t *testing.T) (*hostfs.Root, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := hostfs.New(dir)
	assert.NilError(t, err)
	return r, dir
}

// record returns a complete record of the install named by suffix.
func record(suffix string) *Record {
	return &Record{
		State: Installed,
		Runtime: Runtime{Variant: "containerd", Version: "1.7.20", Unit: "containerd.service",
			Socket: "/run/containerd/containerd.sock", Journal: journal.PathFor("containerd")},
		Mode:   "default",
		Prefix: "/opt/kata",
		Suffix: suffix,
		Dest:   "/opt/kata",
		Handlers: []Handler{
			{Name: "kata", Shim: "qemu", ShimPath: "/opt/kata/bin/containerd-shim-kata-v2", ConfigPath: "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"},
			{Name: "kata-clh", Shim: "clh", ShimPath: "/opt/kata/bin/containerd-shim-kata-v2", ConfigPath: "/opt/kata/share/defaults/kata-containers/configuration-clh.toml"},
		},
		ConfigFiles: []string{"/etc/containerd/config.toml"},
	}
}

var (
	t1 = time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600))
	t2 = t1.Add(time.Hour)
)

func TestPathFor(t *testing.T) {
	tests := []struct {
		suffix, want string
	}{
		{suffix: "", want: "/var/lib/kata-deploy/install.json"},
		{suffix: "second", want: "/var/lib/kata-deploy/install-second.json"},
	}
	for _, tc := range tests {
		assert.Check(t, is.Equal(PathFor(tc.suffix), tc.want), "suffix %q", tc.suffix)
	}
}

func TestLoadMissing(t *testing.T) {
	root, _ := newRoot(t)
	r, err := Load(root, "")
	assert.NilError(t, err)
	assert.Check(t, is.Nil(r))
	all, err := LoadAll(root)
	assert.NilError(t, err)
	assert.Check(t, is.Len(all, 0))
}

func TestSaveLoadRoundTrip(t *testing.T) {
	tests := []struct {
		name        string
		suffix      string
		preexisting bool // Dir is there before the first save
		want        []string
	}{
		{name: "default install on a bare host", want: []string{"/var", "/var/lib", Dir}},
		{name: "named install", suffix: "second", want: []string{"/var", "/var/lib", Dir}},
		// Nothing recorded: Remove then treats Dir as the one to empty.
		{name: "state directory already there", preexisting: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newRoot(t)
			if tc.preexisting {
				assert.NilError(t, os.MkdirAll(filepath.Join(dir, Dir), 0o700))
			}
			r := record(tc.suffix)
			assert.NilError(t, Save(root, r, t1))

			want := record(tc.suffix)
			want.Version = Version
			want.Updated = t1.UTC().Truncate(time.Second)
			want.StateDirs = tc.want
			assert.Check(t, is.DeepEqual(r, want), "Save fills in what it wrote")
			got, err := Load(root, tc.suffix)
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(got, want))

			fi, err := os.Stat(filepath.Join(dir, PathFor(tc.suffix)))
			assert.NilError(t, err)
			assert.Check(t, is.Equal(fi.Mode().Perm(), fs.FileMode(0o600)))
		})
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{name: "corrupt", content: `{"version": 1, "state": `, want: "install record " + PathFor("") + " is corrupt"},
		{name: "not JSON", content: "state = installed\n", want: "install record " + PathFor("") + " is corrupt"},
		{name: "newer version", content: `{"version": 2, "state": "installed"}`, want: "install record " + PathFor("") + ": version 2, this kata-deploy reads 1"},
		{name: "no version", content: `{"state": "installed"}`, want: "install record " + PathFor("") + ": version 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newRoot(t)
			assert.NilError(t, os.MkdirAll(filepath.Join(dir, Dir), 0o700))
			assert.NilError(t, os.WriteFile(filepath.Join(dir, PathFor("")), []byte(tc.content), 0o600))
			_, err := Load(root, "")
			assert.Check(t, is.ErrorContains(err, tc.want))
			// Every command reading all records refuses it too.
			_, err = LoadAll(root)
			assert.Check(t, is.ErrorContains(err, tc.want))
		})
	}
}

func TestEquivalent(t *testing.T) {
	other := func(change func(r *Record)) *Record {
		r := record("")
		change(r)
		return r
	}
	tests := []struct {
		name string
		a, b *Record
		want bool
	}{
		{name: "both nil", want: true},
		{name: "one nil", a: record(""), want: false},
		{name: "the same", a: record(""), b: record(""), want: true},
		{name: "written at another time", a: record(""), b: other(func(r *Record) { r.Updated = t2 }), want: true},
		{name: "one not yet stamped with the version", a: record(""), b: other(func(r *Record) { r.Version = Version }), want: true},
		{name: "another state", a: record(""), b: other(func(r *Record) { r.State = PendingRestart }), want: false},
		{name: "another handler list", a: record(""), b: other(func(r *Record) { r.Handlers = r.Handlers[:1] }), want: false},
		{name: "another prefix", a: record(""), b: other(func(r *Record) { r.Prefix = "/opt/other" }), want: false},
		{name: "other state directories", a: record(""), b: other(func(r *Record) { r.StateDirs = []string{Dir} }), want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Check(t, is.Equal(Equivalent(tc.a, tc.b), tc.want))
			assert.Check(t, is.Equal(Equivalent(tc.b, tc.a), tc.want), "symmetric")
		})
	}
}

// inode identifies the file at p: an atomic rewrite replaces it.
func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	assert.NilError(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestSaveEquivalentIsNotRewritten(t *testing.T) {
	root, dir := newRoot(t)
	p := filepath.Join(dir, PathFor(""))
	assert.NilError(t, Save(root, record(""), t1))
	data, err := os.ReadFile(p)
	assert.NilError(t, err)
	ino := inode(t, p)

	// A re-run that changes nothing, later: nothing is written, and the
	// caller's record says when the node's was.
	again := record("")
	assert.NilError(t, Save(root, again, t2))
	assert.Check(t, is.Equal(inode(t, p), ino), "the record was rewritten")
	now, err := os.ReadFile(p)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(now), string(data)))
	assert.Check(t, is.Equal(again.Updated, t1.UTC().Truncate(time.Second)))
	assert.Check(t, is.DeepEqual(again.StateDirs, []string{"/var", "/var/lib", Dir}), "the state directories come from the node's record")

	// Another state is written, with its time.
	moved := record("")
	moved.State = PendingRestart
	assert.NilError(t, Save(root, moved, t2))
	got, err := Load(root, "")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got.State, PendingRestart))
	assert.Check(t, is.Equal(got.Updated, t2.UTC().Truncate(time.Second)))
	assert.Check(t, is.DeepEqual(got.StateDirs, []string{"/var", "/var/lib", Dir}), "kept across rewrites")
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name string
		// before and after are what else is on the node (paths relative to
		// the host root; a directory ends in "/"), made before and after
		// the record is saved.
		before, after []string
		// save: the record is saved before it is removed.
		save bool
		// want: what is left under the host root.
		want []string
	}{
		{name: "the only record", save: true, want: nil},
		{name: "never saved", save: false, want: nil},
		{
			name: "another install's record keeps the directories", save: true,
			after: []string{"var/lib/kata-deploy/install-second.json"},
			want:  []string{"var", "var/lib", "var/lib/kata-deploy", "var/lib/kata-deploy/install-second.json"},
		},
		{
			name: "an engine's journal keeps the directories", save: true,
			after: []string{"var/lib/kata-deploy/containerd.json"},
			want:  []string{"var", "var/lib", "var/lib/kata-deploy", "var/lib/kata-deploy/containerd.json"},
		},
		{
			// The record made none of them: only Dir, once empty, goes.
			name: "state directory there before the record", save: true,
			before: []string{"var/lib/kata-deploy/"},
			want:   []string{"var", "var/lib"},
		},
	}
	mk := func(t *testing.T, dir string, paths []string) {
		for _, p := range paths {
			full := filepath.Join(dir, p)
			if strings.HasSuffix(p, "/") {
				assert.NilError(t, os.MkdirAll(full, 0o700))
				continue
			}
			assert.NilError(t, os.MkdirAll(filepath.Dir(full), 0o700))
			assert.NilError(t, os.WriteFile(full, []byte("{}"), 0o600))
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newRoot(t)
			mk(t, dir, tc.before)
			r := record("")
			if tc.save {
				assert.NilError(t, Save(root, r, t1))
			}
			mk(t, dir, tc.after)
			assert.NilError(t, Remove(root, r))

			var left []string
			err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
				if err != nil || p == dir {
					return err
				}
				rel, err := filepath.Rel(dir, p)
				left = append(left, rel)
				return err
			})
			assert.NilError(t, err)
			assert.Check(t, is.DeepEqual(left, tc.want))
		})
	}
}

func TestLoadAllOrder(t *testing.T) {
	root, dir := newRoot(t)
	for _, suffix := range []string{"zeta", "", "alpha", "beta"} {
		assert.NilError(t, Save(root, record(suffix), t1))
	}
	d := filepath.Join(dir, Dir)
	// Not install records: a journal, a name that only starts with
	// "install", and a directory with a record's name.
	assert.NilError(t, os.WriteFile(filepath.Join(d, "containerd.json"), []byte(`{"engine": "containerd"}`), 0o600))
	assert.NilError(t, os.WriteFile(filepath.Join(d, "installer.json"), []byte("not a record"), 0o600))
	assert.NilError(t, os.Mkdir(filepath.Join(d, "install-dir.json"), 0o700))

	all, err := LoadAll(root)
	assert.NilError(t, err)
	var suffixes []string
	for _, r := range all {
		suffixes = append(suffixes, r.Suffix)
	}
	assert.Check(t, is.DeepEqual(suffixes, []string{"", "alpha", "beta", "zeta"}), "the default install first, then by suffix")
}

func TestLoadAllUnreadable(t *testing.T) {
	root, dir := newRoot(t)
	// A file where the state directory should be.
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "/var/lib"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, Dir), nil, 0o600))
	_, err := LoadAll(root)
	assert.Check(t, is.ErrorContains(err, "read the node's install records"))
	assert.Check(t, !errors.Is(err, fs.ErrNotExist))
}
