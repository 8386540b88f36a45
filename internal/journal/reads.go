package journal

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// Reads collects the host paths a plan reads and what each held, for
// runtime.Plan.Reads: Apply refuses the plan if any of them has changed
// since (see CheckReads). Its zero value is ready to use; it records each
// path once, as first read.
type Reads struct {
	list []runtime.Read
	seen map[string]bool
}

// List returns what was read, in the order first read.
func (r *Reads) List() []runtime.Read { return r.list }

func (r *Reads) add(rd runtime.Read) {
	rd.Path = path.Clean(rd.Path)
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if r.seen[rd.Path] {
		return
	}
	r.seen[rd.Path] = true
	r.list = append(r.list, rd)
}

// Add records reads another collector (or plan) made.
func (r *Reads) Add(reads ...runtime.Read) {
	for _, rd := range reads {
		r.add(rd)
	}
}

// ReadFile reads the host file p (at most MaxFileSize bytes) and records
// what it held, its absence included.
func (r *Reads) ReadFile(root *hostfs.Root, p string) ([]byte, error) {
	data, err := root.ReadFileLimit(p, MaxFileSize)
	switch {
	case err == nil:
		r.add(runtime.Read{Path: p, Digest: Digest(data)})
	case errors.Is(err, fs.ErrNotExist):
		r.add(runtime.Read{Path: p})
	}
	return data, err
}

// ReadDir lists the host directory p and records its entry names, its
// absence included.
func (r *Reads) ReadDir(root *hostfs.Root, p string) ([]fs.DirEntry, error) {
	entries, err := root.ReadDir(p)
	switch {
	case err == nil:
		r.add(runtime.Read{Path: p, Dir: true, Digest: listDigest(entries)})
	case errors.Is(err, fs.ErrNotExist):
		r.add(runtime.Read{Path: p, Dir: true})
	}
	return entries, err
}

// Exists reports whether the host path p exists, and records it: a
// directory by its listing, anything else by its content.
func (r *Reads) Exists(root *hostfs.Root, p string) (bool, error) {
	fi, err := root.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		r.add(runtime.Read{Path: p})
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.IsDir() {
		_, err = r.ReadDir(root, p)
	} else {
		_, err = r.ReadFile(root, p)
	}
	return err == nil, err
}

// fileDigest hashes the host file p as it streams by, so that a file
// grown huge since it was planned costs no memory to tell apart.
func fileDigest(root *hostfs.Root, p string) (string, error) {
	f, err := root.FS().Open(strings.TrimPrefix(p, "/"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func listDigest(entries []fs.DirEntry) string {
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Name())
		b.WriteByte('\n')
	}
	return Digest([]byte(b.String()))
}

// CheckReads refuses, with a *runtime.StalePlanError with Read set, a plan
// whose reads no longer hold: a file it read changed, appeared or went,
// or a directory it listed gained or lost an entry.
func CheckReads(root *hostfs.Root, reads []runtime.Read) error {
	for _, rd := range reads {
		var now string
		if rd.Dir {
			entries, err := root.ReadDir(rd.Path)
			switch {
			case err == nil:
				now = listDigest(entries)
			case !errors.Is(err, fs.ErrNotExist):
				return err
			}
		} else {
			d, err := fileDigest(root, rd.Path)
			switch {
			case err == nil:
				now = d
			case errors.Is(err, fs.ErrNotExist):
			default:
				// A directory or a device where the plan read a file:
				// not what it read.
				return &ChangedError{Path: rd.Path, Read: true}
			}
		}
		if now != rd.Digest {
			return &ChangedError{Path: rd.Path, Read: true}
		}
	}
	return nil
}
