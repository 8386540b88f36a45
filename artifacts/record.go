package artifacts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"golang.org/x/sys/unix"
)

// recordName is the installation record, kept inside the installed tree so
// that the tree and its record are swapped in together and always agree.
const recordName = ".kata-deploy-record.json"

const recordVersion = 1

// Layout names the shape of a payload.
type Layout string

// Payload layouts.
const (
	// LayoutStatic is Kata 2.x and later's kata-static tree
	// (bin/containerd-shim-kata-v2, share/defaults/kata-containers/...).
	LayoutStatic Layout = "kata-static"
	// LayoutKata1 is Kata 1.x: kata-runtime, kata-proxy, kata-shim,
	// qemu-system-x86_64 with qemu/*, kata-containers.img,
	// vmlinuz.container. Its runtime reads no config.d drop-ins.
	LayoutKata1 Layout = "kata-1.x"
)

// FileType is the kind of an installed entry.
type FileType string

// Installed entry kinds.
const (
	TypeDir     FileType = "dir"
	TypeFile    FileType = "file"
	TypeSymlink FileType = "symlink"
)

// Record is what Status reports: the installation as recorded on the host.
type Record struct {
	Dest   string            `json:"dest"`            // host path of the installation
	Layout Layout            `json:"layout"`          //
	Files  []File            `json:"files"`           // sorted by path
	Shims  map[string]string `json:"shims,omitempty"` // shim -> configuration path to give the container runtime
}

// File is one installed entry.
type File struct {
	Path   string      `json:"path"` // host path
	Type   FileType    `json:"type"`
	Mode   fs.FileMode `json:"mode"`             // permission bits
	Size   int64       `json:"size,omitempty"`   // files
	Digest string      `json:"digest,omitempty"` // files: "sha256:<hex>"
	Target string      `json:"target,omitempty"` // symlinks
}

// statKey identifies a file's content without reading it: any write
// changes mtime, and ctime (which no user can set) changes with any write,
// chmod, link or mtime reset; a new file has a new inode. Device numbers
// are left out because overlay mounts in containers change them.
type statKey struct {
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"`
	Ctime int64  `json:"ctime"`
}

func keyOf(st *unix.Stat_t) statKey {
	return statKey{
		Ino:   st.Ino,
		Size:  st.Size,
		Mtime: st.Mtim.Nano(),
		Ctime: st.Ctim.Nano(),
	}
}

// record is the on-disk form of an installation record.
type record struct {
	Version int               `json:"version"`
	Layout  Layout            `json:"layout"`
	Source  *statKey          `json:"source,omitempty"` // tarball payload's identity
	Entries []recEntry        `json:"entries"`
	Shims   map[string]string `json:"shims,omitempty"` // shim -> path relative to the tree
	// Preexisting lists directories of the tree (relative, "." for the
	// tree itself) that existed before kata-deploy first installed: never
	// removed on uninstall.
	Preexisting []string `json:"preexisting,omitempty"`
	// Parents lists host directories created to hold the tree, outermost
	// first: removed on uninstall when empty.
	Parents []string `json:"parents,omitempty"`
}

type recEntry struct {
	Path   string   `json:"path"`
	Type   FileType `json:"type"`
	Mode   uint32   `json:"mode"`
	Size   int64    `json:"size,omitempty"`
	Digest string   `json:"digest,omitempty"`
	Target string   `json:"target,omitempty"`
	Stat   *statKey `json:"stat,omitempty"` // installed file, when recorded
	Src    *statKey `json:"src,omitempty"`  // payload file it was copied from
}

func (r *record) index() map[string]*recEntry {
	m := make(map[string]*recEntry, len(r.Entries))
	for i := range r.Entries {
		m[r.Entries[i].Path] = &r.Entries[i]
	}
	return m
}

// loadRecord reads the record in the tree d; nil if there is none.
func loadRecord(d *hostfs.Dir) (*record, error) { return loadRecordAt(d, recordName) }

func loadRecordAt(d *hostfs.Dir, name string) (*record, error) {
	f, err := d.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read installation record: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read installation record %s: %w", f.Name(), err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("installation record %s: %w", f.Name(), err)
	}
	if r.Version != recordVersion {
		return nil, fmt.Errorf("installation record %s: version %d, this kata-deploy reads %d", f.Name(), r.Version, recordVersion)
	}
	return &r, nil
}

func (r *record) encode() ([]byte, error) {
	slices.SortFunc(r.Entries, func(a, b recEntry) int { return strings.Compare(a.Path, b.Path) })
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encode installation record: %w", err)
	}
	return append(data, '\n'), nil
}

// writeRecordNew creates the record in a staging tree.
func writeRecordNew(d *hostfs.Dir, r *record, sync bool) error {
	data, err := r.encode()
	if err != nil {
		return err
	}
	f, err := d.Create(recordName, 0o644)
	if err != nil {
		return err
	}
	return writeClose(f, data, sync)
}

// replaceRecord atomically replaces the record in a live tree.
func replaceRecord(d *hostfs.Dir, r *record) error {
	data, err := r.encode()
	if err != nil {
		return err
	}
	tmp := recordName + ".tmp-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	f, err := d.Create(tmp, 0o644)
	if err != nil {
		return err
	}
	if err := writeClose(f, data, true); err != nil {
		_ = d.Remove(tmp)
		return err
	}
	if err := d.Rename(tmp, d, recordName); err != nil {
		_ = d.Remove(tmp)
		return err
	}
	return d.Sync()
}

func writeClose(f interface {
	Write([]byte) (int, error)
	Chmod(fs.FileMode) error
	Sync() error
	Close() error
}, data []byte, sync bool) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *record) public(dest string) *Record {
	out := &Record{Dest: dest, Layout: r.Layout, Shims: map[string]string{}}
	for _, e := range r.Entries {
		out.Files = append(out.Files, File{
			Path: hostJoin(dest, e.Path), Type: e.Type, Mode: fs.FileMode(e.Mode),
			Size: e.Size, Digest: e.Digest, Target: e.Target,
		})
	}
	for shim, p := range r.Shims {
		out.Shims[shim] = hostJoin(dest, p)
	}
	return out
}

func hostJoin(dest, rel string) string {
	if rel == "." {
		return dest
	}
	return path.Join(dest, rel)
}
