package artifacts

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/fs"
)

// installedHost returns a host with kataStatic("v1") installed.
func installedHost(t *testing.T) string {
	t.Helper()
	host := newHost(t)
	_, err := Install(context.Background(), host, payloadDir(t, kataStatic("v1")))
	assert.NilError(t, err)
	return host
}

func TestTarballEntriesRefused(t *testing.T) {
	file := func(name string, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: 1}
	}
	link := func(name, target string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}
	}
	for _, tc := range []struct {
		name    string
		hdrs    []*tar.Header
		opts    []Option
		entry   string
		want    error
		wantMsg string
	}{
		{name: "absolute path", hdrs: []*tar.Header{file("/etc/cron.d/evil", 0o644)}, entry: "/etc/cron.d/evil", want: ErrUnsafeAbsolutePath},
		{name: "dot-dot", hdrs: []*tar.Header{file("./opt/kata/../../../etc/evil", 0o644)}, entry: "./opt/kata/../../../etc/evil", want: ErrUnsafeDotDot},
		{name: "symlink absolute", hdrs: []*tar.Header{link("./opt/kata/bin/evil", "/etc")}, entry: "./opt/kata/bin/evil", want: ErrUnsafeLink},
		{name: "symlink out of archive", hdrs: []*tar.Header{link("./opt/kata/bin/evil", "../../../../etc")}, entry: "./opt/kata/bin/evil", want: ErrUnsafeLink},
		{name: "symlink out of opt/kata", hdrs: []*tar.Header{link("./opt/kata/evil", "../../etc")}, entry: "./opt/kata/evil", want: ErrUnsafeLink},
		{name: "symlink climbs after descending", hdrs: []*tar.Header{link("./opt/kata/bin/evil", "x/../../../..")}, entry: "./opt/kata/bin/evil", want: ErrUnsafeLink},
		{name: "hard link outside", hdrs: []*tar.Header{{Name: "./opt/kata/bin/evil", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}}, entry: "./opt/kata/bin/evil", want: ErrUnsafeLink},
		{name: "hard link to nothing earlier", hdrs: []*tar.Header{{Name: "./opt/kata/bin/evil", Typeflag: tar.TypeLink, Linkname: "./opt/kata/bin/later"}}, entry: "./opt/kata/bin/evil", want: ErrUnsafeLink},
		{name: "char device", hdrs: []*tar.Header{{Name: "./opt/kata/dev-mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1, Mode: 0o600}}, entry: "./opt/kata/dev-mem", want: ErrUnsafeSpecialFile},
		{name: "block device", hdrs: []*tar.Header{{Name: "./opt/kata/sda", Typeflag: tar.TypeBlock, Devmajor: 8, Mode: 0o600}}, entry: "./opt/kata/sda", want: ErrUnsafeSpecialFile},
		{name: "fifo", hdrs: []*tar.Header{{Name: "./opt/kata/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}}, entry: "./opt/kata/fifo", want: ErrUnsafeSpecialFile},
		{name: "setuid", hdrs: []*tar.Header{file("./opt/kata/bin/suid", 0o4755)}, entry: "./opt/kata/bin/suid", want: ErrUnsafeSetuid},
		{name: "setgid", hdrs: []*tar.Header{file("./opt/kata/bin/sgid", 0o2755)}, entry: "./opt/kata/bin/sgid", want: ErrUnsafeSetuid},
		{name: "entry below a symlink", hdrs: []*tar.Header{link("./opt/kata/lnk", "bin"), file("./opt/kata/lnk/evil", 0o644)}, entry: "./opt/kata/lnk/evil", want: ErrUnsafeBelowLink},
		{name: "duplicate", hdrs: []*tar.Header{file("./opt/kata/bin/qemu-system-x86_64", 0o755)}, entry: "./opt/kata/bin/qemu-system-x86_64", want: ErrUnsafeDuplicate},
		{name: "larger than the limit", opts: []Option{WithMaxSize(1000)}, entry: "./opt/kata/share/kata-containers/kata-containers.img", want: ErrTooLarge},
		{name: "more entries than the limit", opts: []Option{WithMaxEntries(5)}, want: ErrTooManyEntries},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, fresh := range []bool{true, false} {
				host := newHost(t)
				if !fresh {
					host = installedHost(t)
				}
				before := snapshot(t, host)
				// The hostile entries come last: everything before them
				// was staged, and must go.
				tb := kataStatic("v2").tarball(t, "zst", func(tw *tar.Writer) {
					for _, h := range tc.hdrs {
						assert.NilError(t, tw.WriteHeader(h))
						if h.Size > 0 {
							_, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
							assert.NilError(t, err)
						}
					}
				})
				_, err := Install(context.Background(), host, tb, tc.opts...)
				assert.Assert(t, errors.Is(err, tc.want), "got %v", err)
				var ee *EntryError
				assert.Assert(t, errors.As(err, &ee), "got %T %v", err, err)
				if tc.entry != "" {
					assert.Check(t, is.Equal(ee.Entry, tc.entry))
					assert.Check(t, is.ErrorContains(err, tc.entry))
				}
				assert.Check(t, is.DeepEqual(descs(snapshot(t, host)), descs(before)), "nothing installed, nothing left behind")
				// Plan refuses it the same way.
				_, err = Plan(context.Background(), host, tb, tc.opts...)
				assert.Check(t, errors.Is(err, tc.want), "plan: got %v", err)
			}
		})
	}
}

func TestDecompressionBombRefused(t *testing.T) {
	host := newHost(t)
	// 256 MiB of zeros compress to almost nothing.
	var raw bytes.Buffer
	zw, err := zstd.NewWriter(&raw)
	assert.NilError(t, err)
	tw := tar.NewWriter(zw)
	const size = 256 << 20
	assert.NilError(t, tw.WriteHeader(&tar.Header{Name: "./opt/kata/bin/containerd-shim-kata-v2", Typeflag: tar.TypeReg, Mode: 0o755, Size: size}))
	zeros := make([]byte, 1<<20)
	for range size >> 20 {
		_, err := tw.Write(zeros)
		assert.NilError(t, err)
	}
	assert.NilError(t, tw.Close())
	assert.NilError(t, zw.Close())
	file := filepath.Join(t.TempDir(), "bomb.tar.zst")
	assert.NilError(t, os.WriteFile(file, raw.Bytes(), 0o644))
	assert.Check(t, raw.Len() < 1<<20, "compressed to %d bytes", raw.Len())

	start := time.Now()
	_, err = Install(context.Background(), host, file, WithMaxSize(64<<20))
	assert.Check(t, errors.Is(err, ErrTooLarge), "got %v", err)
	// Refused from the header, before a byte was decompressed to disk.
	assert.Check(t, time.Since(start) < 5*time.Second)
	assert.Check(t, is.DeepEqual(descs(snapshot(t, host)), map[string]string{".": "dir 755"}))
}

func TestPayloadDirectoryEntriesRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, tree string)
		entry string
		want  error
	}{
		{"setuid", func(t *testing.T, tree string) {
			assert.NilError(t, unix.Chmod(filepath.Join(tree, "bin/qemu-system-x86_64"), 0o4755))
		}, "bin/qemu-system-x86_64", ErrUnsafeSetuid},
		{"fifo", func(t *testing.T, tree string) {
			assert.NilError(t, unix.Mkfifo(filepath.Join(tree, "bin/fifo"), 0o600))
		}, "bin/fifo", ErrUnsafeSpecialFile},
		{"symlink absolute", func(t *testing.T, tree string) {
			assert.NilError(t, os.Symlink("/etc/shadow", filepath.Join(tree, "bin/evil")))
		}, "opt/kata/bin/evil", ErrUnsafeLink},
		{"symlink out of the tree", func(t *testing.T, tree string) {
			assert.NilError(t, os.Symlink("../../../etc", filepath.Join(tree, "bin/evil")))
		}, "opt/kata/bin/evil", ErrUnsafeLink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := installedHost(t)
			before := snapshot(t, host)
			payload := payloadDir(t, kataStatic("v2"))
			tc.setup(t, filepath.Join(payload, "opt/kata"))
			_, err := Install(context.Background(), host, payload)
			assert.Assert(t, errors.Is(err, tc.want), "got %v", err)
			var ee *EntryError
			assert.Assert(t, errors.As(err, &ee))
			assert.Check(t, is.Equal(ee.Entry, tc.entry))
			assert.Check(t, is.DeepEqual(descs(snapshot(t, host)), descs(before)))
		})
	}
}

func TestManifest(t *testing.T) {
	spec := kataStatic("v1")
	good := spec.sha256sums("opt/kata")
	for _, tc := range []struct {
		name     string
		manifest string
		corrupt  string // file to change after the manifest was made
		want     *ChecksumError
	}{
		{name: "good", manifest: good},
		{name: "good, BSD form and ./ paths", manifest: strings.ReplaceAll(bsd(good), "(opt/", "(./opt/")},
		{name: "corrupted file", manifest: good, corrupt: "bin/qemu-system-x86_64",
			want: &ChecksumError{Path: "bin/qemu-system-x86_64"}},
		{name: "file not listed", manifest: dropLine(good, "vmlinux-6.1"),
			want: &ChecksumError{Path: "share/kata-containers/vmlinux-6.1"}},
		{name: "listed file missing", manifest: good + strings.Repeat("a", 64) + "  opt/kata/bin/gone\n",
			want: &ChecksumError{Path: "bin/gone"}},
	} {
		for _, kind := range []string{"dir", "tar.gz"} {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				host := installedHost(t)
				before := snapshot(t, host)
				s := spec
				if tc.corrupt != "" {
					f := s[tc.corrupt]
					f.data += "!"
					s = s.with(payloadSpec{tc.corrupt: f})
				}
				var payload string
				if kind == "dir" {
					payload = payloadDir(t, s)
					assert.NilError(t, os.WriteFile(filepath.Join(payload, "SHA256SUMS"), []byte(tc.manifest), 0o644))
				} else {
					payload = s.tarball(t, "gz", func(tw *tar.Writer) {
						assert.NilError(t, tw.WriteHeader(&tar.Header{Name: "./SHA256SUMS", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(tc.manifest))}))
						_, err := tw.Write([]byte(tc.manifest))
						assert.NilError(t, err)
					})
				}
				_, err := Install(context.Background(), host, payload)
				if tc.want == nil {
					assert.NilError(t, err)
					return
				}
				var ce *ChecksumError
				assert.Assert(t, errors.As(err, &ce), "got %v", err)
				assert.Check(t, is.Equal(ce.Path, tc.want.Path))
				assert.Check(t, is.DeepEqual(descs(snapshot(t, host)), descs(before)))
			})
		}
	}
}

func bsd(manifest string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(manifest), "\n") {
		sum, file, _ := strings.Cut(l, "  ")
		out = append(out, "SHA256 ("+file+") = "+sum)
	}
	return strings.Join(out, "\n") + "\n"
}

func dropLine(manifest, substr string) string {
	var out []string
	for _, l := range strings.Split(manifest, "\n") {
		if !strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestAbsoluteHostSymlinkStaysInsideRoot(t *testing.T) {
	host := newHost(t)
	// An ordinary host symlink: /opt -> /var/opt (immutable systems).
	assert.NilError(t, os.MkdirAll(filepath.Join(host, "var/opt"), 0o755))
	assert.NilError(t, os.Symlink("/var/opt", filepath.Join(host, "opt")))
	rep, err := Install(context.Background(), host, payloadDir(t, kataStatic("v1")))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(rep.Dest, "/opt/kata"))
	data, err := os.ReadFile(filepath.Join(host, "var/opt/kata/bin/containerd-shim-kata-v2"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "shim v1"))

	_, err = Uninstall(context.Background(), host)
	assert.NilError(t, err)
	assert.Assert(t, fs.Equal(host, expected(t, payloadSpec{
		"var": {isDir: true}, "var/opt": {isDir: true}, "opt": {link: "/var/opt"},
	})))
}

func TestHostileHostSymlinksCannotEscape(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	assert.NilError(t, os.WriteFile(victim, []byte("keep"), 0o644))
	assert.NilError(t, os.Mkdir(filepath.Join(outside, "kata"), 0o755))

	t.Run("parent", func(t *testing.T) {
		host := newHost(t)
		rel, err := filepath.Rel(host, outside)
		assert.NilError(t, err)
		assert.NilError(t, os.Symlink(rel, filepath.Join(host, "opt")))
		_, err = Install(context.Background(), host, payloadDir(t, kataStatic("v1")))
		assert.NilError(t, err)
		// Resolved as the host would: ".." stops at the root.
		inside := rel
		for strings.HasPrefix(inside, "../") {
			inside = strings.TrimPrefix(inside, "../")
		}
		_, err = os.Stat(filepath.Join(host, inside, "kata/bin/containerd-shim-kata-v2"))
		assert.Check(t, err)
	})

	t.Run("inside the installed tree", func(t *testing.T) {
		host := installedHost(t)
		// Someone turns installed directories into links to the outside.
		share := filepath.Join(host, "opt/kata/share/kata-containers")
		assert.NilError(t, os.RemoveAll(share))
		assert.NilError(t, os.Symlink(outside, share))
		assert.NilError(t, os.WriteFile(filepath.Join(outside, "kata-containers.img"), []byte("outside"), 0o644))

		_, err := Install(context.Background(), host, payloadDir(t, kataStatic("v2")))
		assert.NilError(t, err)
		st, err := os.Lstat(share)
		assert.NilError(t, err)
		assert.Check(t, st.IsDir(), "the link was replaced by the payload's directory")

		assert.NilError(t, os.RemoveAll(share))
		assert.NilError(t, os.Symlink(outside, share))
		_, err = Uninstall(context.Background(), host)
		assert.NilError(t, err)
	})
	data, err := os.ReadFile(victim)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "keep"))
	data, err = os.ReadFile(filepath.Join(outside, "kata-containers.img"))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(data), "outside"))
	entries, err := os.ReadDir(filepath.Join(outside, "kata"))
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 0))
}

func TestConcurrentInstallersSerialise(t *testing.T) {
	host := newHost(t)
	payloads := []string{payloadDir(t, kataStatic("v1")), payloadDir(t, kataStatic("v2"))}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Install(context.Background(), host, payloads[i%2])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		assert.Check(t, err)
	}
	got := fs.Equal(host, expectedStatic(t, "v1"))().Success() || fs.Equal(host, expectedStatic(t, "v2"))().Success()
	assert.Check(t, got, "one whole tree, nothing left beside it:\n%s", listing(snapshot(t, host)))
}

func TestInstallWaitsForTheHostLock(t *testing.T) {
	host := newHost(t)
	assert.NilError(t, os.Mkdir(filepath.Join(host, "opt"), 0o755))
	root, err := hostfs.New(host)
	assert.NilError(t, err)
	d, err := root.OpenDir("/opt")
	assert.NilError(t, err)
	defer d.Close()
	unlock, err := d.Lock(context.Background())
	assert.NilError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = Install(ctx, host, payloadDir(t, kataStatic("v1")))
	assert.Check(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	_, err = os.Stat(filepath.Join(host, "opt/kata"))
	assert.Check(t, os.IsNotExist(err))

	unlock()
	_, err = Install(context.Background(), host, payloadDir(t, kataStatic("v1")))
	assert.NilError(t, err)
}
