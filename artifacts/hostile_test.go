package artifacts

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// Hostile payloads against a destination file system that is too small
// (issue 11 item 8): each is refused with a NoSpaceError before it fills
// the disk, and leaves nothing behind.

// smallOpt returns a host whose /opt is a tmpfs mounted with opts (size=,
// nr_inodes=): the destination's own file system, as a separate /opt is.
func smallOpt(t *testing.T, opts string) (host, opt string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a small tmpfs as /opt needs root")
		}
		t.Skip("mounting a small tmpfs as /opt needs root")
	}
	host = newHost(t)
	opt = filepath.Join(host, "opt")
	assert.NilError(t, os.Mkdir(opt, 0o755))
	assert.NilError(t, unix.Mount("tmpfs", opt, "tmpfs", 0, "mode=0755,"+opts))
	t.Cleanup(func() { _ = unix.Unmount(opt, unix.MNT_DETACH) })
	return host, opt
}

// assertUntouched checks that a refused install left the tmpfs as it was
// mounted: no entry, and every block and inode free again.
func assertUntouched(t *testing.T, opt string) {
	t.Helper()
	entries, err := os.ReadDir(opt)
	assert.NilError(t, err)
	assert.Check(t, is.Len(entries, 0))
	var st unix.Statfs_t
	assert.NilError(t, unix.Statfs(opt, &st))
	assert.Check(t, is.Equal(st.Bfree, st.Blocks), "blocks still used")
}

// noSpace returns the NoSpaceError in err, failing the test if there is
// none.
func noSpace(t *testing.T, err error) *NoSpaceError {
	t.Helper()
	var ns *NoSpaceError
	assert.Assert(t, errors.As(err, &ns), "want a NoSpaceError, got %v", err)
	assert.Check(t, errors.Is(err, unix.ENOSPC))
	assert.Check(t, is.Equal(ns.Dir, "/opt"))
	return ns
}

// withBig is kataStatic with an image of size bytes.
func withBig(size int) payloadSpec {
	return kataStatic("v1").with(payloadSpec{
		"share/kata-containers/kata-containers.img": {data: strings.Repeat("i", size)},
	})
}

// payloadKinds are the forms a payload comes in: a directory, or a tarball
// of each compression.
var payloadKinds = []string{"dir", "tar", "gz", "xz", "zst"}

func writePayload(t *testing.T, spec payloadSpec, kind string) string {
	t.Helper()
	if kind == "dir" {
		return payloadDir(t, spec)
	}
	if kind == "tar" {
		kind = ""
	}
	return spec.tarball(t, kind)
}

// 20 MiB of /opt keeps 16 MiB free: a 6 MiB image does not fit, in any
// form of payload, and is refused before staging (a directory) or on the
// image's header (a tarball).
func TestPayloadLargerThanTheRoomRefused(t *testing.T) {
	for _, kind := range payloadKinds {
		t.Run(kind, func(t *testing.T) {
			host, opt := smallOpt(t, "size=20m")
			payload := writePayload(t, withBig(6<<20), kind)
			_, err := Install(context.Background(), host, payload)
			ns := noSpace(t, err)
			assert.Check(t, !ns.Inodes)
			assert.Check(t, is.Equal(ns.Avail, int64(20<<20)))
			assert.Check(t, is.Equal(ns.Reserve, int64(minReserveBytes)))
			assert.Check(t, ns.Need > 6<<20, "needs %d", ns.Need)
			assert.Check(t, is.Equal(ns.AtLeast, kind != "dir"))
			assert.Check(t, is.ErrorContains(err, "not enough room on /opt for the Kata payload: needs "))
			assertUntouched(t, opt)

			// A plan says the same, and writes nothing either.
			_, err = Plan(context.Background(), host, payload)
			noSpace(t, err)
			assertUntouched(t, opt)
		})
	}
}

// A payload that needs exactly what is free beyond the reserve installs,
// and really uses no more than was estimated; one block more is refused.
func TestPayloadThatFitsExactlyInstalls(t *testing.T) {
	// Measure the slack with a payload that does not fit.
	host, _ := smallOpt(t, "size=20m")
	_, err := Install(context.Background(), host, payloadDir(t, withBig(6<<20)))
	ns := noSpace(t, err)
	fits := 6<<20 - int(ns.Need+ns.Reserve-ns.Avail)
	assert.Assert(t, fits > 0 && fits%4096 == 0, "image of %d bytes", fits)

	for _, kind := range payloadKinds {
		t.Run(kind, func(t *testing.T) {
			host, opt := smallOpt(t, "size=20m")
			_, err := Install(context.Background(), host, writePayload(t, withBig(fits+1), kind))
			noSpace(t, err)
			assertUntouched(t, opt)

			_, err = Install(context.Background(), host, writePayload(t, withBig(fits), kind))
			assert.NilError(t, err)
			// The estimate covered what was really used.
			var st unix.Statfs_t
			assert.NilError(t, unix.Statfs(opt, &st))
			assert.Check(t, int64(st.Bavail)*st.Bsize >= ns.Reserve,
				"%d bytes left, reserve %d", int64(st.Bavail)*st.Bsize, ns.Reserve)
			data, err := os.ReadFile(filepath.Join(opt, "kata/share/kata-containers/kata-containers.img"))
			assert.NilError(t, err)
			assert.Check(t, is.Len(data, fits))
		})
	}
}

// An upgrade stages the new tree beside the installed one: what did not
// change is hard-linked and costs nothing, what changed must fit with the
// old tree still there.
func TestUpgradeNeedsRoomForBothTrees(t *testing.T) {
	host, opt := smallOpt(t, "size=20m")
	_, err := Install(context.Background(), host, payloadDir(t, withBig(3<<20)))
	assert.NilError(t, err)
	before := snapshot(t, opt)

	// The same image and a new shim: only the shim is staged anew.
	_, err = Install(context.Background(), host, payloadDir(t, withBig(3<<20).with(payloadSpec{
		"bin/containerd-shim-kata-v2": {mode: 0o755, data: "shim v2"},
	})))
	assert.NilError(t, err)

	// A new 3 MiB image beside the installed one does not fit.
	_, err = Install(context.Background(), host, payloadDir(t, withBig(3<<20).with(payloadSpec{
		"share/kata-containers/kata-containers.img": {data: strings.Repeat("j", 3<<20)},
	})))
	ns := noSpace(t, err)
	assert.Check(t, ns.Need > 3<<20 && ns.Need < 4<<20, "needs %d", ns.Need)
	after := snapshot(t, opt)
	assert.Check(t, is.Equal(after["kata/share/kata-containers/kata-containers.img"].Ino,
		before["kata/share/kata-containers/kata-containers.img"].Ino), "the installed image is untouched")
	_, err = os.Lstat(filepath.Join(opt, ".kata.kd-new"))
	assert.Check(t, errors.Is(err, os.ErrNotExist), "no staging tree left")
}

// Headers that declare far more than the disk holds are refused on the
// header, within the size limit: the content is never read (here it is
// not even there) and nothing is written. A size near 2^63 must not wrap
// the running total round to something that fits.
func TestTarballBombRefusedOnItsHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		opts []Option
		want string
	}{
		{name: "8GiB", size: 8 << 30, want: "needs at least 8.0 GiB and keeps 16 MiB free, 20 MiB available"},
		{name: "2^63-1", size: math.MaxInt64, opts: []Option{WithMaxSize(math.MaxInt64)}, want: "needs at least 8.0 EiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, opt := smallOpt(t, "size=20m")
			var raw bytes.Buffer
			zw, err := zstd.NewWriter(&raw)
			assert.NilError(t, err)
			tw := tar.NewWriter(zw)
			assert.NilError(t, tw.WriteHeader(&tar.Header{Name: "./opt/kata/bin/containerd-shim-kata-v2", Typeflag: tar.TypeReg, Mode: 0o755, Size: tc.size}))
			_, err = tw.Write(make([]byte, 1<<20))
			assert.NilError(t, err)
			// No Close: a truncated archive, whose content could not be read.
			assert.NilError(t, zw.Close())
			file := filepath.Join(t.TempDir(), "bomb.tar.zst")
			assert.NilError(t, os.WriteFile(file, raw.Bytes(), 0o644))

			_, err = Install(context.Background(), host, file, tc.opts...)
			ns := noSpace(t, err)
			assert.Check(t, ns.AtLeast)
			assert.Check(t, ns.Need >= tc.size, "needs %d", ns.Need)
			assert.Check(t, is.ErrorContains(err, tc.want))
			assertUntouched(t, opt)
		})
	}
}

// Many entries, each small, that together do not fit: refused on the
// first header that takes the running total past the room, and the
// entries already staged are dropped.
func TestTarballOfManyEntriesRefusedWhenTheTotalDoesNotFit(t *testing.T) {
	host, opt := smallOpt(t, "size=20m")
	spec := kataStatic("v1").with(payloadSpec{"share/many": {isDir: true}})
	for i := range 40 {
		spec[fmt.Sprintf("share/many/%02d", i)] = pfile{data: strings.Repeat("z", 1<<20)}
	}
	file := spec.tarball(t, "zst")
	fi, err := os.Stat(file)
	assert.NilError(t, err)
	assert.Check(t, fi.Size() < 1<<20, "a %d-byte archive", fi.Size())

	_, err = Install(context.Background(), host, file)
	ns := noSpace(t, err)
	assert.Check(t, ns.AtLeast)
	assert.Check(t, ns.Need > 4<<20 && ns.Need <= 5<<20+64<<10, "needs %d", ns.Need)
	assertUntouched(t, opt)
}

// A payload of very many small files runs out of inodes before bytes:
// counted and refused too.
func TestPayloadOfManyFilesRefusedWhenInodesRunOut(t *testing.T) {
	for _, kind := range []string{"dir", "zst"} {
		t.Run(kind, func(t *testing.T) {
			host, opt := smallOpt(t, "size=64m,nr_inodes=1500")
			spec := kataStatic("v1").with(payloadSpec{"share/many": {isDir: true}})
			for i := range 600 {
				spec[fmt.Sprintf("share/many/%03d", i)] = pfile{data: "x"}
			}
			_, err := Install(context.Background(), host, writePayload(t, spec, kind))
			ns := noSpace(t, err)
			assert.Check(t, ns.Inodes)
			assert.Check(t, is.Equal(ns.Reserve, int64(minReserveInodes)))
			assert.Check(t, is.ErrorContains(err, "not enough inodes on /opt for the Kata payload: needs "))
			assertUntouched(t, opt)
		})
	}
}

func TestNoSpaceErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		err  NoSpaceError
		want string
	}{
		{
			err:  NoSpaceError{Dir: "/opt", Need: 1288490189, Reserve: 16 << 20, Avail: 310 << 20},
			want: "not enough room on /opt for the Kata payload: needs 1.2 GiB and keeps 16 MiB free, 310 MiB available",
		},
		{
			err:  NoSpaceError{Dir: "/usr/local", Need: 1 << 40, Reserve: 1 << 30, Avail: 1000, AtLeast: true},
			want: "not enough room on /usr/local for the Kata payload: needs at least 1.0 TiB and keeps 1.0 GiB free, 1000 B available",
		},
		{
			err:  NoSpaceError{Dir: "/opt", Inodes: true, Need: 120000, Reserve: 1000, Avail: 5000},
			want: "not enough inodes on /opt for the Kata payload: needs 120000 and keeps 1000 free, 5000 available",
		},
	} {
		assert.Check(t, is.Equal(tc.err.Error(), tc.want))
	}
}

// What staging writes is claimed in whole blocks; what is hard-linked from
// the installed tree is not; the boundary is inclusive. (Without root: the
// tests above measure the same on a real file system.)
func TestRoomClaims(t *testing.T) {
	r := &room{dir: "/opt", bsize: 4096, bytes: 1 << 20, inodes: 2000, reserveBytes: 512 << 10, reserveInodes: 1000}
	r.claimNodes([]*node{
		{path: ".", typ: TypeDir},
		{path: "bin", typ: TypeDir},
		{path: "bin/shim", typ: TypeFile, size: 1},
		{path: "bin/kept", typ: TypeFile, size: 1 << 30, keep: true},
		{path: "short", typ: TypeSymlink, target: "bin/shim"},
		{path: "long", typ: TypeSymlink, target: strings.Repeat("a/", 40)},
		{path: "gen", typ: TypeFile, data: make([]byte, 4097), gen: true},
	})
	assert.Check(t, is.Equal(r.needBytes, int64(4096+4096+4096+2*4096)))
	assert.Check(t, is.Equal(r.needInodes, int64(5)))
	assert.NilError(t, r.check(false))

	r.claimFile(512<<10 - r.needBytes) // exactly what is left beyond the reserve
	assert.NilError(t, r.check(false))
	r.claimFile(1)
	err := r.check(true)
	assert.Check(t, is.Error(err, "not enough room on /opt for the Kata payload: needs at least 516 KiB and keeps 512 KiB free, 1.0 MiB available"))

	r = &room{dir: "/opt", bsize: 4096, bytes: -1, inodes: 1010, reserveInodes: 1000}
	for range 10 {
		r.claimFile(0)
	}
	assert.NilError(t, r.check(false), "unknown byte room is not checked")
	r.claimDir()
	assert.Check(t, is.ErrorContains(r.check(false), "not enough inodes on /opt"))

	var none *room
	none.claimFile(1 << 40)
	assert.NilError(t, none.check(true), "no directory to measure yet: nothing refused")
}

// smallHost returns a host root that is itself a tmpfs mounted with opts,
// holding nothing: /opt is missing, and the room to check is the root's.
func smallHost(t *testing.T, opts string) string {
	t.Helper()
	host, _ := smallOpt(t, opts) // skips, or fails on CI, without root
	assert.NilError(t, unix.Unmount(filepath.Join(host, "opt"), unix.MNT_DETACH))
	assert.NilError(t, os.Remove(filepath.Join(host, "opt")))
	assert.NilError(t, unix.Mount("tmpfs", host, "tmpfs", 0, "mode=0755,"+opts))
	t.Cleanup(func() { _ = unix.Unmount(host, unix.MNT_DETACH) })
	return host
}

// Plan runs the room check Install runs when the destination's directory
// does not exist yet (issue 19 item 7): both measure the nearest directory
// that exists, on whose file system the missing ones would be created, and
// both refuse a payload that does not fit, or both accept one that does.
func TestPlanChecksTheRoomWhenTheDestinationIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		host func(t *testing.T) string
		opts []Option
		dir  string // NoSpaceError.Dir
	}{
		{
			name: "no /opt on a small root",
			host: func(t *testing.T) string { return smallHost(t, "size=20m") },
			dir:  "/opt",
		},
		{
			name: "prefix below a small /opt",
			host: func(t *testing.T) string { host, _ := smallOpt(t, "size=20m"); return host },
			opts: []Option{WithPrefix("/opt/vendor/lib")},
			dir:  "/opt/vendor/lib",
		},
	} {
		for _, kind := range []string{"dir", "zst"} {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				host := tc.host(t)
				before := snapshot(t, host)
				big := writePayload(t, withBig(6<<20), kind)

				_, planErr := Plan(context.Background(), host, big, tc.opts...)
				assert.Check(t, is.DeepEqual(snapshot(t, host), before), "a plan writes nothing")
				_, installErr := Install(context.Background(), host, big, tc.opts...)
				// (The parents it made and removed again leave a new ctime.)
				assert.Check(t, is.DeepEqual(descs(snapshot(t, host)), descs(before)), "a refused install leaves nothing")
				ins := noSpaceIn(t, installErr, tc.dir)
				pns := noSpaceIn(t, planErr, tc.dir)
				assert.Check(t, is.Equal(pns.Inodes, ins.Inodes))
				assert.Check(t, is.Equal(pns.Avail, ins.Avail))
				assert.Check(t, is.Equal(pns.Reserve, ins.Reserve))
				assert.Check(t, is.Equal(pns.AtLeast, ins.AtLeast))

				// What fits is planned and installed alike.
				small := writePayload(t, kataStatic("v1"), kind)
				before = snapshot(t, host)
				_, err := Plan(context.Background(), host, small, tc.opts...)
				assert.Check(t, err)
				assert.Check(t, is.DeepEqual(snapshot(t, host), before), "a plan writes nothing")
				_, err = Install(context.Background(), host, small, tc.opts...)
				assert.Check(t, err)
			})
		}
	}
}

// noSpaceIn returns the NoSpaceError in err, which must name dir.
func noSpaceIn(t *testing.T, err error, dir string) *NoSpaceError {
	t.Helper()
	var ns *NoSpaceError
	assert.Assert(t, errors.As(err, &ns), "want a NoSpaceError, got %v", err)
	assert.Check(t, errors.Is(err, unix.ENOSPC))
	assert.Check(t, is.Equal(ns.Dir, dir))
	return ns
}
