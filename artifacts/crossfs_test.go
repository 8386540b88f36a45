package artifacts

import (
	"context"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	"gotest.tools/v3/fs"
)

// A DaemonSet's payload sits on the container's overlay root file system and
// /host/opt is the node's: the kernel refuses copy_file_range between them
// (EXDEV), as it does from a tmpfs. The install must copy through user space
// and produce the same tree, with every digest checked.
func TestInstallPayloadOnAnotherFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a tmpfs for the payload needs root")
		}
		t.Skip("mounting a tmpfs for the payload needs root")
	}
	mnt := t.TempDir()
	assert.NilError(t, unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m,mode=0755"))
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })

	host := newHost(t)
	var hostFS, payloadFS unix.Statfs_t
	assert.NilError(t, unix.Statfs(host, &hostFS))
	assert.NilError(t, unix.Statfs(mnt, &payloadFS))
	assert.Assert(t, hostFS.Type != payloadFS.Type, "the host root must be on another file system than the tmpfs")

	// One file large enough to be hashed beside the copy, as a guest
	// image would be.
	spec := kataStatic("v1").with(payloadSpec{
		"share/kata-containers/kata-containers.img": {data: strings.Repeat("guest image ", 600_000)},
	})
	spec.writeDir(t, mnt, "opt/kata")

	_, err := Install(context.Background(), host, mnt)
	assert.NilError(t, err)
	assert.Assert(t, fs.Equal(host, expected(t, installed(spec, "opt/kata", generatedEntries()))))

	// And a second run finds everything in place.
	rep, err := Install(context.Background(), host, mnt)
	assert.NilError(t, err)
	assert.Equal(t, len(rep.Added)+len(rep.Changed)+len(rep.Removed), 0)
}
