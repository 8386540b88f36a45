package artifacts

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	fsx "gotest.tools/v3/fs"
)

// pfile is one entry of a test payload, by path below the tree root.
type pfile struct {
	mode   fs.FileMode // raw mode bits (0o1777 is sticky); 0: 0644 for files, 0755 for directories
	data   string
	link   string // symlink target
	isDir  bool
	hlink  string // tar only: hard link to this tree path
	rawTyp byte   // tar only: raw type flag for hostile entries
	name   string // tar only: raw entry name, overriding the computed one
}

type payloadSpec map[string]pfile

const qemuConfig = `[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
image = "/opt/kata/share/kata-containers/kata-containers.img"
kernel_params = "console=hvc0 quiet"
enable_annotations = ["enable_iommu", "virtio_fs_extra_args"]
valid_hypervisor_paths = ["/opt/kata/bin/qemu-system-x86_64"]
enable_debug = false

[agent.kata]
enable_debug = false

[runtime]
enable_debug = false
`

const clhConfig = `[hypervisor.clh]
path = "/opt/kata/bin/cloud-hypervisor"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
kernel_params = ""

[agent.kata]

[runtime]
`

// kataStatic is a small payload with kata-static's layout.
func kataStatic(version string) payloadSpec {
	return payloadSpec{
		"bin":                            {isDir: true},
		"bin/containerd-shim-kata-v2":    {mode: 0o755, data: "shim " + version},
		"bin/qemu-system-x86_64":         {mode: 0o755, data: "qemu"},
		"bin/cloud-hypervisor":           {mode: 0o755, data: "clh"},
		"share":                          {isDir: true},
		"share/defaults":                 {isDir: true},
		"share/defaults/kata-containers": {isDir: true},
		"share/defaults/kata-containers/configuration-qemu.toml": {data: qemuConfig},
		"share/defaults/kata-containers/configuration-clh.toml":  {data: clhConfig},
		"share/defaults/kata-containers/configuration.toml":      {link: "configuration-qemu.toml"},
		"share/kata-containers":                                  {isDir: true},
		"share/kata-containers/vmlinux-6.1":                      {data: strings.Repeat("kernel ", 100)},
		"share/kata-containers/vmlinux.container":                {link: "vmlinux-6.1"},
		"share/kata-containers/kata-containers.img":              {data: strings.Repeat("image ", 1000)},
	}
}

// kata1 is a small payload with the Kata 1.x layout.
func kata1() payloadSpec {
	return payloadSpec{
		"bin":                    {isDir: true},
		"bin/kata-runtime":       {mode: 0o755, data: "runtime"},
		"bin/kata-proxy":         {mode: 0o755, data: "proxy"},
		"bin/kata-shim":          {mode: 0o755, data: "shim"},
		"bin/qemu-system-x86_64": {mode: 0o755, data: "qemu"},
		"qemu":                   {isDir: true},
		"qemu/bios-256k.bin":     {data: "bios"},
		"kata-containers.img":    {data: "image"},
		"vmlinuz.container":      {data: "kernel"},
		"configuration.toml":     {data: "[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n"},
	}
}

func (p payloadSpec) with(changes payloadSpec, remove ...string) payloadSpec {
	out := payloadSpec{}
	for k, v := range p {
		if !slices.Contains(remove, k) {
			out[k] = v
		}
	}
	for k, v := range changes {
		out[k] = v
	}
	return out
}

func (p payloadSpec) sorted() []string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return comparePaths(keys[i], keys[j]) < 0 })
	return keys
}

func (f pfile) perm() fs.FileMode {
	if f.mode != 0 {
		return f.mode
	}
	if f.isDir {
		return 0o755
	}
	return 0o644
}

// writeDir writes the payload as a directory below dir/prefix.
func (p payloadSpec) writeDir(t *testing.T, dir, prefix string) {
	t.Helper()
	root := filepath.Join(dir, prefix)
	assert.NilError(t, os.MkdirAll(root, 0o755))
	for _, k := range p.sorted() {
		f := p[k]
		full := filepath.Join(root, k)
		assert.NilError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		switch {
		case f.isDir:
			assert.NilError(t, os.Mkdir(full, f.perm()))
			// Raw bits, as a tar header has them: 0o1777 is sticky.
			assert.NilError(t, unix.Chmod(full, uint32(f.perm())))
		case f.link != "":
			assert.NilError(t, os.Symlink(f.link, full))
		default:
			assert.NilError(t, os.WriteFile(full, []byte(f.data), f.perm()))
			assert.NilError(t, unix.Chmod(full, uint32(f.perm())))
		}
	}
}

// payloadDir writes a kata-static style payload directory (under opt/kata).
func payloadDir(t *testing.T, p payloadSpec) string {
	t.Helper()
	dir := t.TempDir()
	p.writeDir(t, dir, "opt/kata")
	return dir
}

// sha256sums returns a manifest of p's files, paths relative to the
// payload root.
func (p payloadSpec) sha256sums(prefix string) string {
	var b strings.Builder
	for _, k := range p.sorted() {
		f := p[k]
		if f.isDir || f.link != "" {
			continue
		}
		sum := sha256.Sum256([]byte(f.data))
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), path.Join(prefix, k))
	}
	return b.String()
}

// tarball writes p as an archive below "./opt/kata/" compressed with comp
// ("", "gz", "xz", "zst") and returns its path.
func (p payloadSpec) tarball(t *testing.T, comp string, extra ...func(*tar.Writer)) string {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	hdr := func(h *tar.Header) {
		h.ModTime = time.Unix(1700000000, 0)
		assert.NilError(t, tw.WriteHeader(h))
	}
	hdr(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755})
	hdr(&tar.Header{Name: "./opt/", Typeflag: tar.TypeDir, Mode: 0o755})
	hdr(&tar.Header{Name: "./opt/kata/", Typeflag: tar.TypeDir, Mode: 0o755})
	for _, k := range p.sorted() {
		f := p[k]
		name := "./opt/kata/" + k
		if f.name != "" {
			name = f.name
		}
		h := &tar.Header{Name: name, Mode: int64(f.perm())}
		switch {
		case f.rawTyp != 0:
			h.Typeflag, h.Linkname = f.rawTyp, f.link
			if f.rawTyp == tar.TypeReg {
				h.Size = int64(len(f.data))
			}
		case f.isDir:
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		case f.hlink != "":
			h.Typeflag, h.Linkname = tar.TypeLink, "./opt/kata/"+f.hlink
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		hdr(h)
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write([]byte(f.data))
			assert.NilError(t, err)
		}
	}
	for _, e := range extra {
		e(tw)
	}
	assert.NilError(t, tw.Close())

	file := filepath.Join(t.TempDir(), "kata-static.tar")
	out, err := os.Create(file + map[string]string{"": "", "gz": ".gz", "xz": ".xz", "zst": ".zst"}[comp])
	assert.NilError(t, err)
	defer out.Close()
	var w io.WriteCloser
	switch comp {
	case "":
		w = nopCloser{out}
	case "gz":
		w = gzip.NewWriter(out)
	case "xz":
		w, err = xz.NewWriter(out)
		assert.NilError(t, err)
	case "zst":
		w, err = zstd.NewWriter(out)
		assert.NilError(t, err)
	}
	_, err = w.Write(raw.Bytes())
	assert.NilError(t, err)
	assert.NilError(t, w.Close())
	return out.Name()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// snapshot describes a whole tree: type, mode, content or target, and the
// inode, so that tests see both what is there and what was rewritten.
type snapEntry struct {
	Desc string
	Ino  uint64
	Ctim int64
}

func snapshot(t *testing.T, dir string) map[string]snapEntry {
	t.Helper()
	out := map[string]snapEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		var desc string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			desc = fmt.Sprintf("dir %o", st.Mode&0o7777)
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			desc = "link -> " + target
		default:
			data, _ := os.ReadFile(p)
			if path.Base(rel) == recordName {
				data = []byte("(record)")
			}
			desc = fmt.Sprintf("file %o %q", st.Mode&0o7777, data)
		}
		out[rel] = snapEntry{Desc: desc, Ino: st.Ino, Ctim: st.Ctim.Nano()}
		return nil
	})
	assert.NilError(t, err)
	return out
}

// listing renders a snapshot one entry a line, for golden files.
func listing(s map[string]snapEntry) string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		desc := s[k].Desc
		if len(desc) > 90 {
			desc = desc[:90] + "..."
		}
		fmt.Fprintf(&b, "%s: %s\n", k, desc)
	}
	return b.String()
}

// expected builds the fs.Manifest of a whole tree from flat paths.
func expected(t *testing.T, files payloadSpec) fsx.Manifest {
	t.Helper()
	var ops func(dir string) []fsx.PathOp
	ops = func(dir string) []fsx.PathOp {
		var out []fsx.PathOp
		for _, k := range files.sorted() {
			if path.Dir(k) != dir {
				continue
			}
			f := files[k]
			base := path.Base(k)
			switch {
			case f.isDir:
				out = append(out, fsx.WithDir(base, append(ops(k), fsx.WithMode(f.perm()))...))
			case f.link != "":
				out = append(out, fsx.WithSymlink(base, f.link))
			case f.data == "*":
				out = append(out, fsx.WithFile(base, "", fsx.MatchAnyFileContent, fsx.WithMode(f.perm())))
			default:
				out = append(out, fsx.WithFile(base, f.data, fsx.WithMode(f.perm())))
			}
		}
		return out
	}
	return fsx.Expected(t, append(ops("."), fsx.WithMode(0o755))...)
}

// installed places spec at dest (relative to the host root) with the
// entries kata-deploy adds for a kata-static payload without settings.
func installed(spec payloadSpec, dest string, extra payloadSpec) payloadSpec {
	out := payloadSpec{}
	for d := path.Dir(dest); d != "."; d = path.Dir(d) {
		out[d] = pfile{isDir: true}
	}
	out[dest] = pfile{isDir: true}
	out[dest+"/"+recordName] = pfile{data: "*"}
	for k, v := range spec {
		out[dest+"/"+k] = v
	}
	for k, v := range extra {
		out[dest+"/"+k] = v
	}
	return out
}

// generatedEntries are what kata-deploy adds to kataStatic's tree.
func generatedEntries() payloadSpec {
	const d = "share/defaults/kata-containers/runtimes"
	return payloadSpec{
		d:                                   {isDir: true},
		d + "/qemu":                         {isDir: true},
		d + "/qemu/configuration-qemu.toml": {link: "../../configuration-qemu.toml"},
		d + "/clh":                          {isDir: true},
		d + "/clh/configuration-clh.toml":   {link: "../../configuration-clh.toml"},
	}
}

func descs(s map[string]snapEntry) map[string]string {
	out := map[string]string{}
	for k, v := range s {
		out[k] = v.Desc
	}
	return out
}
