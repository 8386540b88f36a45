package artifacts

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/golden"
)

// lax is kataStatic as a careless build leaves it: directories and files
// writable by group or others, a sticky world-writable directory, the shim
// and a hypervisor executable by all and writable by all.
func lax() payloadSpec {
	return kataStatic("v1").with(payloadSpec{
		"bin":                            {isDir: true, mode: 0o777},
		"bin/containerd-shim-kata-v2":    {mode: 0o777, data: "shim v1"},
		"bin/qemu-system-x86_64":         {mode: 0o775, data: "qemu"},
		"share":                          {isDir: true, mode: 0o775},
		"share/defaults/kata-containers": {isDir: true, mode: 0o757},
		"share/defaults/kata-containers/configuration-qemu.toml": {mode: 0o666, data: qemuConfig},
		"share/tmp":          {isDir: true, mode: 0o1777},
		"share/tmp/readme":   {mode: 0o640, data: "x"},
		"share/kata-monitor": {mode: 0o700, data: "monitor"},
	})
}

// ownership lists every entry below dir (the dir itself as "."), with its
// owner and mode, one a line, for a golden file.
func ownership(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == recordName {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			lines = append(lines, fmt.Sprintf("%s: %d:%d link", rel, st.Uid, st.Gid))
			return nil
		}
		lines = append(lines, fmt.Sprintf("%s: %d:%d %04o", rel, st.Uid, st.Gid, st.Mode&0o7777))
		return nil
	})
	assert.NilError(t, err)
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// chownTree gives every entry below dir to uid:gid, symlinks themselves.
func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	assert.NilError(t, err)
}

// Installed files and directories are root's and writable by no one else,
// whatever the payload's modes and owners (issue 19 item 10): the mask 022
// is taken off every mode, the sticky bit dropped, the exec bits kept. An
// /opt whose setgid bit would hand its group to new directories does not
// either. Installing the same payload again still writes nothing.
func TestInstalledTreeIsRootsAndNotWritableByOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving payload files to another user, and checking root owns the install, needs root")
	}
	for _, kind := range []string{"dir", "tar", "zst"} {
		t.Run(kind, func(t *testing.T) {
			host := newHost(t)
			opt := filepath.Join(host, "opt")
			assert.NilError(t, os.Mkdir(opt, 0o755))
			assert.NilError(t, os.Chown(opt, 0, 1234))
			assert.NilError(t, unix.Chmod(opt, 0o2775))
			payload := writePayload(t, lax(), kind)
			if kind == "dir" {
				chownTree(t, payload, 1000, 1000)
			}

			_, err := Install(context.Background(), host, payload)
			assert.NilError(t, err)
			golden.Assert(t, ownership(t, filepath.Join(opt, "kata")), "lax.ownership.golden")
			st, err := Status(context.Background(), host)
			assert.NilError(t, err)
			for _, f := range st.Files {
				if f.Type == TypeSymlink {
					continue // a symlink's mode is always 0777 and means nothing
				}
				assert.Check(t, f.Mode&(0o022|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid) == 0, "%s recorded %s", f.Path, f.Mode)
			}

			// Again: nothing changed, nothing written.
			before := snapshot(t, host)
			var steps []string
			rep, err := Install(context.Background(), host, payload, withStepHook(func(s string) { steps = append(steps, s) }))
			assert.NilError(t, err)
			assert.Check(t, !rep.HasChanges(), rep.String())
			assert.Check(t, is.Len(steps, 0))
			assert.Check(t, is.DeepEqual(snapshot(t, host), before))
		})
	}
}

// An installed entry someone gave to another user, or made writable by
// others, is not what was installed: the next install replaces it, whether
// the payload is a directory or the very tarball installed last.
func TestReinstallTakesBackWhatOthersWereGiven(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving installed files to another user needs root")
	}
	for _, kind := range []string{"dir", "zst"} {
		for _, tc := range []struct {
			name    string
			tamper  func(t *testing.T, kata string)
			changed []string
		}{
			{
				name:    "directory given away",
				tamper:  func(t *testing.T, kata string) { assert.NilError(t, os.Chown(filepath.Join(kata, "bin"), 1000, 1000)) },
				changed: []string{"/opt/kata/bin/"},
			},
			{
				name: "shim given away",
				tamper: func(t *testing.T, kata string) {
					assert.NilError(t, os.Chown(filepath.Join(kata, "bin/containerd-shim-kata-v2"), 0, 1000))
				},
				changed: []string{"/opt/kata/bin/containerd-shim-kata-v2"},
			},
			{
				name: "tree made world-writable",
				tamper: func(t *testing.T, kata string) {
					assert.NilError(t, os.Chmod(kata, 0o777))
					assert.NilError(t, os.Chmod(filepath.Join(kata, "bin/containerd-shim-kata-v2"), 0o777))
				},
				changed: []string{"/opt/kata/", "/opt/kata/bin/containerd-shim-kata-v2"},
			},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				host := newHost(t)
				payload := writePayload(t, kataStatic("v1"), kind)
				_, err := Install(context.Background(), host, payload)
				assert.NilError(t, err)
				kata := filepath.Join(host, "opt/kata")
				want := ownership(t, kata)
				tc.tamper(t, kata)

				rep, err := Install(context.Background(), host, payload)
				assert.NilError(t, err)
				assert.Check(t, is.DeepEqual(rep.Changed, tc.changed))
				assert.Check(t, is.Equal(ownership(t, kata), want))
			})
		}
	}
}
