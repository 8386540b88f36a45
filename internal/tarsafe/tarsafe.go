// Package tarsafe reads tar archives (plain, gzip, xz or zstd, detected from
// their first bytes) and refuses, entry by entry, anything that could write
// outside the extraction root or install more than was asked for: absolute
// paths, "..", symlinks and hard links that point outside, entries below a
// symlink, device nodes and FIFOs, setuid and setgid bits, duplicates, and
// sizes beyond a limit (decompression bombs). It only reads: the caller
// writes, so that nothing is installed before the whole archive passed.
package tarsafe

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Reasons an entry is refused. An *EntryError wraps one of them.
var (
	ErrAbsolutePath = errors.New("absolute path")
	ErrDotDot       = errors.New("path leaves the archive root")
	ErrLinkOutside  = errors.New("link points outside the archive root")
	ErrSpecialFile  = errors.New("device node, FIFO or socket")
	ErrSetuid       = errors.New("setuid or setgid bit")
	ErrTooLarge     = errors.New("archive larger than the limit")
	ErrTooMany      = errors.New("archive has more entries than the limit")
	ErrBelowLink    = errors.New("entry below a symlink or file")
	ErrDuplicate    = errors.New("duplicate entry")
)

// EntryError names the archive entry that was refused and why.
type EntryError struct {
	Entry string // the entry's name as stored in the archive
	Err   error  // one of the Err* reasons, or a read error
}

func (e *EntryError) Error() string { return fmt.Sprintf("archive entry %q: %v", e.Entry, e.Err) }

func (e *EntryError) Unwrap() error { return e.Err }

// Type is the kind of an accepted entry.
type Type int

// Entry types.
const (
	Dir Type = iota
	File
	Symlink
	Hardlink
)

// Entry is an accepted archive entry.
type Entry struct {
	Raw    string      // the name as stored in the archive, for messages
	Name   string      // clean, relative, slash-separated; "." never appears
	Type   Type        //
	Mode   fs.FileMode // permission bits only (sticky allowed, never setuid/setgid)
	Size   int64       // File only
	Target string      // Symlink: as stored (relative); Hardlink: clean name of an earlier File
}

// Limits bound what an archive may hold. Zero means the default.
type Limits struct {
	MaxBytes   int64 // total size of file contents; default 16 GiB
	MaxEntries int   // default 1 << 20
}

const (
	defaultMaxBytes   = 16 << 30
	defaultMaxEntries = 1 << 20
)

// Reader yields the accepted entries of one archive in order.
type Reader struct {
	tr      *tar.Reader
	closer  func()
	limits  Limits
	total   int64
	count   int
	seen    map[string]Type
	pending io.Reader
}

// NewReader detects the compression of r from its first bytes and returns
// a Reader over the archive. Close releases decompressor resources.
func NewReader(r io.Reader, limits Limits) (*Reader, error) {
	if limits.MaxBytes <= 0 {
		limits.MaxBytes = defaultMaxBytes
	}
	if limits.MaxEntries <= 0 {
		limits.MaxEntries = defaultMaxEntries
	}
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read archive header: %w", err)
	}
	var (
		in     io.Reader = br
		closer           = func() {}
	)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		in, closer = zr, func() { zr.Close() }
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		in = xr
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// Bounded window and two decoding goroutines keep memory flat
		// whatever the archive; 64 MiB covers every zstd level but --long.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(2),
			zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		in, closer = zr, zr.Close
	}
	return &Reader{tr: tar.NewReader(in), closer: closer, limits: limits, seen: map[string]Type{}}, nil
}

// Close releases the decompressor.
func (r *Reader) Close() { r.closer() }

// Next returns the next accepted entry, io.EOF at the end, or an
// *EntryError for the first entry refused. The content of a File entry is
// read from r before the next call.
func (r *Reader) Next() (*Entry, error) {
	for {
		h, err := r.tr.Next()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		e, skip, err := r.check(h)
		if err != nil {
			return nil, &EntryError{Entry: h.Name, Err: err}
		}
		if skip {
			continue
		}
		r.pending = r.tr
		return e, nil
	}
}

// Read reads the content of the current File entry.
func (r *Reader) Read(p []byte) (int, error) {
	if r.pending == nil {
		return 0, io.EOF
	}
	return r.pending.Read(p)
}

// WriteTo lets io.Copy stream the current entry without an extra buffer.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	if r.pending == nil {
		return 0, nil
	}
	return io.Copy(w, r.pending)
}

func (r *Reader) check(h *tar.Header) (e *Entry, skip bool, err error) {
	r.count++
	if r.count > r.limits.MaxEntries {
		return nil, false, ErrTooMany
	}
	name, err := CleanName(h.Name)
	if err != nil {
		return nil, false, err
	}
	mode := fs.FileMode(h.Mode)
	if h.Mode&(04000|02000) != 0 {
		return nil, false, ErrSetuid
	}
	e = &Entry{Raw: h.Name, Name: name, Mode: mode.Perm()}
	if h.Mode&01000 != 0 {
		e.Mode |= fs.ModeSticky
	}
	switch h.Typeflag {
	case tar.TypeDir:
		e.Type = Dir
	case tar.TypeReg, tar.TypeGNUSparse:
		// No tar.TypeRegA: tar.Reader reports it as TypeReg (or, with a
		// trailing slash, TypeDir).
		e.Type = File
		if h.Size < 0 || h.Size > r.limits.MaxBytes-r.total {
			return nil, false, ErrTooLarge
		}
		r.total += h.Size
		e.Size = h.Size
	case tar.TypeSymlink:
		e.Type = Symlink
		if err := checkSymlink(name, h.Linkname); err != nil {
			return nil, false, err
		}
		e.Target = h.Linkname
	case tar.TypeLink:
		e.Type = Hardlink
		target, err := CleanName(h.Linkname)
		if err != nil {
			return nil, false, ErrLinkOutside
		}
		if r.seen[target] != File {
			return nil, false, fmt.Errorf("%w: hard link to %q, which is not an earlier file", ErrLinkOutside, h.Linkname)
		}
		e.Target = target
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return nil, false, ErrSpecialFile
	case tar.TypeXGlobalHeader:
		return nil, true, nil
	default:
		return nil, false, fmt.Errorf("unsupported entry type %q", h.Typeflag)
	}
	if name == "." {
		if e.Type != Dir {
			return nil, false, ErrDotDot
		}
		return nil, true, nil
	}
	// Every parent must be a directory this archive made, or one it did
	// not mention (implied); never a symlink or file it made, or writing
	// the entry would go through that symlink.
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if t, ok := r.seen[p]; ok && t != Dir {
			return nil, false, fmt.Errorf("%w %q", ErrBelowLink, p)
		}
	}
	if t, ok := r.seen[name]; ok {
		// A directory repeated is harmless (GNU tar emits them on append).
		if t == Dir && e.Type == Dir {
			return nil, true, nil
		}
		return nil, false, ErrDuplicate
	}
	r.seen[name] = e.Type
	return e, false, nil
}

// CleanName turns an archive or manifest name into a clean relative path,
// refusing absolute paths and any that leave the root.
func CleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", ErrAbsolutePath
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: NUL in name", ErrDotDot)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", ErrDotDot
		}
	}
	return path.Clean(name), nil
}

// checkSymlink refuses a symlink at name whose target leaves the root:
// absolute targets (they would mean the host's own files) and relative ones
// that climb above it.
func checkSymlink(name, target string) error {
	if target == "" {
		return fmt.Errorf("%w: empty target", ErrLinkOutside)
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("%w: absolute target %q", ErrLinkOutside, target)
	}
	// Climbing is allowed only before descending: "a/../.." would climb
	// through a, which may itself be a symlink, so a lexical count could not
	// vouch for it. With that rule, and parents that are real directories,
	// every link resolves inside the root if each one does on its own.
	depth := strings.Count(name, "/") // directories above the link
	descended := false
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			if descended {
				return fmt.Errorf("%w: target %q climbs after descending", ErrLinkOutside, target)
			}
			depth--
			if depth < 0 {
				return fmt.Errorf("%w: target %q", ErrLinkOutside, target)
			}
		default:
			descended = true
		}
	}
	return nil
}

// CheckSymlink applies the archive rule for symlinks to a link found
// elsewhere, such as in a payload directory: the target must stay below the
// root that holds name.
func CheckSymlink(name, target string) error { return checkSymlink(name, target) }
