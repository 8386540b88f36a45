package artifacts

import (
	"fmt"
	"math"
	"path"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"golang.org/x/sys/unix"
)

// room is what the file system the new tree is staged on can give this
// run, and what the run has claimed of it so far. The staged tree lives
// beside the installed one until the exchange, so both must fit at once:
// the installed tree is already counted as used, and every file staged
// anew (not hard-linked from the installed tree) is claimed.
//
// A nil *room measures nothing and refuses nothing.
type room struct {
	dir   string // host directory the tree is staged in, for messages
	bsize int64

	// From statfs: bytes and inodes free, or -1 when the file system does
	// not say (tmpfs without a size, btrfs inodes).
	bytes, inodes int64
	// Kept free for the node, beyond what the payload needs.
	reserveBytes, reserveInodes int64

	needBytes, needInodes int64 // claimed so far
}

// Reserves left free on the destination's file system: 1 % of it, at least
// 16 MiB and 1000 inodes. They cover what the estimate cannot see (extent
// and journal blocks, other writers while the payload is staged) and leave
// the node's own daemons room to log the next failure.
const (
	minReserveBytes  = 16 << 20
	minReserveInodes = 1000
)

// measureRoom reads the room on the file system of the directory the tree
// is staged in, and claims the staging tree's root directory.
//
// A plan may find that directory missing (Install creates it, and its
// parents, before it measures): it then measures the nearest directory that
// exists, on whose file system Install would create the missing ones, and
// claims each of them too, so that a plan refuses what Install refuses. On
// a file system where an empty directory takes no block (tmpfs) the plan is
// the stricter of the two by one block per missing directory.
//
// It counts f_bavail, the blocks an unprivileged user may still take, not
// f_bfree, although the installer runs as root and could go on into the
// reserved blocks (5 % of an ext4 file system by default): that reserve is
// what keeps root daemons working when a file system fills, and the
// kubelet's nodefs.available eviction signal is computed from f_bavail
// (cAdvisor), so where /opt shares the kubelet's file system a payload
// that fitted only into the reserve would put the node under disk pressure
// and have its pods evicted. Linux has no f_favail distinct
// from f_ffree: inodes are counted from f_ffree.
func (t *target) measureRoom() (*room, error) {
	d, missing := t.parent, 0
	if d == nil {
		var err error
		if d, missing, err = t.nearestDir(); err != nil {
			return nil, err
		}
		defer d.Close()
	}
	st, err := d.Statfs()
	if err != nil {
		return nil, err
	}
	r := &room{dir: path.Dir(t.dest), bsize: st.Bsize, bytes: -1, inodes: -1}
	if r.bsize <= 0 {
		r.bsize = 4096
	}
	if st.Blocks > 0 {
		r.bytes = int64(st.Bavail) * st.Bsize
		r.reserveBytes = max(minReserveBytes, int64(st.Blocks)*st.Bsize/100)
	}
	if st.Files > 0 {
		r.inodes = int64(st.Ffree)
		r.reserveInodes = max(minReserveInodes, int64(st.Files)/100)
	}
	for range missing {
		r.claimDir()
	}
	r.claimDir()
	return r, nil
}

// nearestDir opens the innermost existing directory on the way to the
// missing directory the tree would be staged in, and says how many
// directories Install would create below it.
func (t *target) nearestDir() (*hostfs.Dir, int, error) {
	missing := 0
	for d := t.dir; ; d = path.Dir(d) {
		ok, err := t.root.Exists(d)
		if err != nil {
			return nil, 0, err
		}
		if ok || d == "/" {
			dir, err := t.root.OpenDir(d)
			return dir, missing, err
		}
		missing++
	}
}

// blocks rounds size up to whole blocks of the file system.
func (r *room) blocks(size int64) int64 {
	if size > math.MaxInt64-r.bsize {
		return math.MaxInt64
	}
	return (size + r.bsize - 1) / r.bsize * r.bsize
}

// claimFile claims a regular file of size bytes written anew.
func (r *room) claimFile(size int64) {
	if r == nil {
		return
	}
	r.addBytes(r.blocks(size))
	r.needInodes++
}

// addBytes adds n to the bytes claimed, saturating: a header may declare
// up to 2^63-1 bytes when the size limit allows it, and a sum that wrapped
// round would fit.
func (r *room) addBytes(n int64) {
	if n > math.MaxInt64-r.needBytes {
		r.needBytes = math.MaxInt64
		return
	}
	r.needBytes += n
}

// claimDir claims a directory: an inode and, on most file systems, a block.
func (r *room) claimDir() {
	if r == nil {
		return
	}
	r.addBytes(r.bsize)
	r.needInodes++
}

// claimSymlink claims a symlink: an inode, and a block for a target too
// long to be stored in the inode (ext4 keeps up to 59 bytes there).
func (r *room) claimSymlink(target string) {
	if r == nil {
		return
	}
	if len(target) >= 60 {
		r.addBytes(r.blocks(int64(len(target))))
	}
	r.needInodes++
}

// claimNodes claims what staging nodes writes: files that are kept from
// the installed tree are hard links and cost nothing.
func (r *room) claimNodes(nodes []*node) {
	for _, n := range nodes {
		switch {
		case n.path == ".":
		case n.typ == TypeDir:
			r.claimDir()
		case n.typ == TypeSymlink:
			r.claimSymlink(n.target)
		case n.typ == TypeFile && n.data != nil:
			r.claimFile(int64(len(n.data)))
		case n.typ == TypeFile && !n.keep:
			r.claimFile(n.size)
		}
	}
}

// claimRecord claims the installation record of nodes: its JSON holds, per
// entry, the path, target, digest and two identities, under 400 bytes of
// fixed overhead.
func (r *room) claimRecord(nodes []*node) {
	if r == nil {
		return
	}
	size := int64(4096)
	for _, n := range nodes {
		size += 400 + 2*int64(len(n.path)) + int64(len(n.target))
	}
	r.claimFile(size)
}

// check refuses when what was claimed, with the reserve, exceeds what is
// free. atLeast says the claims are those of a tarball's entries so far.
func (r *room) check(atLeast bool) error {
	if r == nil {
		return nil
	}
	if r.bytes >= 0 && r.needBytes > r.bytes-r.reserveBytes {
		return &NoSpaceError{Dir: r.dir, Need: r.needBytes, Reserve: r.reserveBytes, Avail: r.bytes, AtLeast: atLeast}
	}
	if r.inodes >= 0 && r.needInodes > r.inodes-r.reserveInodes {
		return &NoSpaceError{Dir: r.dir, Inodes: true, Need: r.needInodes, Reserve: r.reserveInodes, Avail: r.inodes, AtLeast: atLeast}
	}
	return nil
}

// NoSpaceError reports that the payload will not fit on the file system
// the destination is on, checked before anything is staged (for a tarball,
// as each entry's header declares its size, before its content is
// written). Nothing was installed or left behind. It matches
// errors.Is(err, syscall.ENOSPC).
type NoSpaceError struct {
	Dir     string // host directory the tree is staged in, e.g. /opt
	Inodes  bool   // inodes ran short; Need, Reserve and Avail count inodes, not bytes
	Need    int64  // what the payload needs
	Reserve int64  // what kata-deploy leaves free beyond it
	Avail   int64  // what the file system has free (f_bavail or f_ffree)
	AtLeast bool   // a tarball being read: Need is what its entries so far declare
}

func (e *NoSpaceError) Error() string {
	least := ""
	if e.AtLeast {
		least = "at least "
	}
	if e.Inodes {
		return fmt.Sprintf("not enough inodes on %s for the Kata payload: needs %s%d and keeps %d free, %d available",
			e.Dir, least, e.Need, e.Reserve, e.Avail)
	}
	return fmt.Sprintf("not enough room on %s for the Kata payload: needs %s%s and keeps %s free, %s available",
		e.Dir, least, humanBytes(e.Need), humanBytes(e.Reserve), humanBytes(e.Avail))
}

// Unwrap makes the error an ENOSPC, as the write it prevented would have
// been.
func (e *NoSpaceError) Unwrap() error { return unix.ENOSPC }

// humanBytes renders n in binary units, three significant digits at most.
func humanBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %ciB", v, units[i])
	}
	return fmt.Sprintf("%.0f %ciB", v, units[i])
}
