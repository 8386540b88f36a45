// Command imagebuild writes the kata-deploy image as an OCI image layout
// tarball without a container engine: the three binaries, the Kata payload
// and a minimal base, at the same paths and with the same configuration as
// the Dockerfile's final stage. The result imports with
// `ctr -n k8s.io images import`, `podman load` or `skopeo copy oci-archive:`.
//
//	imagebuild -bin-dir _output/bin -payload _output/payload -out _output/kata-deploy.tar
//
// The build is reproducible: every file is owned by 0:0 with the time of
// SOURCE_DATE_EPOCH (or the Unix epoch), entries are sorted, so the same
// inputs give the same image digest.
package main

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's layout and configuration. The Dockerfile's final stage must
// say the same (imagebuild_test.go compares them).
const (
	binDir      = "/usr/local/bin"
	payloadDir  = "/opt/kata-artifacts"
	entrypoint  = binDir + "/kata-installer"
	defaultRef  = "quay.io/kata-containers/kata-deploy-go:latest"
	imageSource = "https://github.com/kata-deploy/kata-deploy"
)

// binaries are the commands the image ships, all in binDir.
var binaries = []string{"kata-labeler", "kata-installer", "kata-cleanup"}

// imageConfig is the runtime configuration. User 0: the installer and the
// cleanup must be root (systemd's private socket accepts only root; the
// host files they edit are root's). The labeler's DaemonSet runs it as
// 65532 instead.
func imageConfig() v1.Config {
	return v1.Config{
		Entrypoint: []string{entrypoint},
		Cmd:        []string{"install"},
		User:       "0:0",
		WorkingDir: "/",
		Env: []string{
			"PATH=" + binDir,
			"KATA_PAYLOAD=" + payloadDir,
			"KATA_HOST_ROOT=/host",
		},
	}
}

// baseFiles are the only files besides the binaries and the payload:
// enough for a static Go binary (names for uid 0 and 65532, /tmp).
var baseFiles = []struct {
	name string
	mode int64
	data string
}{
	{"etc/group", 0o644, "root:x:0:\nnonroot:x:65532:\n"},
	{"etc/passwd", 0o644, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
}

type options struct {
	arches      []string
	binDir      string
	payload     string
	out         string
	push        string
	ref         string
	kataVersion string
	version     string
	revision    string
	created     time.Time
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var o options
	arches := fl.String("arch", "amd64", "architectures to build, comma-separated (amd64, arm64, s390x, ppc64le); more than one makes an image index")
	fl.StringVar(&o.binDir, "bin-dir", "", "directory holding "+strings.Join(binaries, ", ")+" built for the architecture; {arch} stands for it (required)")
	fl.StringVar(&o.payload, "payload", "", "directory holding the architecture's Kata payload, the kata-static tree opt/kata/...; {arch} stands for it (required)")
	fl.StringVar(&o.out, "out", "", "OCI image layout tarball to write (required unless -push is given)")
	fl.StringVar(&o.push, "push", "", "registry reference to push the image (or index) to, e.g. registry.example.com/kata-deploy:v1")
	fl.StringVar(&o.ref, "ref", defaultRef, "image reference recorded in the layout")
	fl.StringVar(&o.kataVersion, "kata-version", "", "Kata release of the payload, recorded as the io.katacontainers.version label")
	fl.StringVar(&o.version, "version", "dev", "kata-deploy version, recorded as a label")
	fl.StringVar(&o.revision, "revision", "", "source revision, recorded as a label")
	if err := fl.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if o.binDir == "" || o.payload == "" || (o.out == "" && o.push == "") || fl.NArg() != 0 {
		fl.Usage()
		return fmt.Errorf("%w: -bin-dir, -payload and -out (or -push) are required", errUsage)
	}
	for _, a := range strings.Split(*arches, ",") {
		if !slices.Contains(knownArches, a) {
			return fmt.Errorf("%w: -arch %q: want one of %s", errUsage, a, strings.Join(knownArches, ", "))
		}
		if slices.Contains(o.arches, a) {
			return fmt.Errorf("%w: -arch %q given twice", errUsage, a)
		}
		o.arches = append(o.arches, a)
	}
	if len(o.arches) > 1 && (!strings.Contains(o.binDir, "{arch}") || !strings.Contains(o.payload, "{arch}")) {
		return fmt.Errorf("%w: with more than one -arch, -bin-dir and -payload must name each architecture's directory with {arch}", errUsage)
	}
	if o.kataVersion == "" {
		fmt.Fprintln(stderr, "imagebuild: warning: -kata-version not given; the io.katacontainers.version label says \"unknown\"")
		o.kataVersion = "unknown"
	}
	// SOURCE_DATE_EPOCH is the reproducible-builds convention; read here
	// only, so that build itself has no hidden inputs.
	o.created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: SOURCE_DATE_EPOCH %q: %w", errUsage, s, err)
		}
		o.created = time.Unix(sec, 0).UTC()
	}

	workDir := "."
	if o.out != "" {
		workDir = filepath.Dir(o.out)
	}
	tmp, err := os.MkdirTemp(workDir, ".imagebuild-")
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	var images []v1.Image
	for _, arch := range o.arches {
		ao := o
		ao.binDir = strings.ReplaceAll(o.binDir, "{arch}", arch)
		ao.payload = strings.ReplaceAll(o.payload, "{arch}", arch)
		dir := filepath.Join(tmp, arch)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("work directory: %w", err)
		}
		img, err := build(ctx, ao, arch, dir)
		if err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
		images = append(images, img)
	}
	// One architecture stays a plain image, as ctr import and skopeo have
	// always been given; more make an index.
	var top partial.Describable
	if len(images) == 1 {
		top = images[0]
	} else {
		idx, err := index(images, o.arches)
		if err != nil {
			return err
		}
		top = idx
	}
	if o.out != "" {
		if err := writeLayoutTar(ctx, top, o.ref, o.out, tmp); err != nil {
			return err
		}
	}
	d, err := top.(interface{ Digest() (v1.Hash, error) }).Digest()
	if err != nil {
		return fmt.Errorf("image digest: %w", err)
	}
	if o.out != "" {
		fmt.Fprintf(stdout, "wrote %s: %s %s (%s)\n", o.out, o.ref, d, strings.Join(o.arches, ", "))
	}
	if o.push != "" {
		if err := push(ctx, top, o.push); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s@%s (%s)\n", o.push, d, strings.Join(o.arches, ", "))
	}
	return nil
}

// knownArches are the architectures Kata ships releases for.
var knownArches = []string{"amd64", "arm64", "s390x", "ppc64le"}

// index makes an OCI image index over one image per architecture.
func index(images []v1.Image, arches []string) (v1.ImageIndex, error) {
	var adds []mutate.IndexAddendum
	for i, img := range images {
		desc, err := partial.Descriptor(img)
		if err != nil {
			return nil, fmt.Errorf("image index: %w", err)
		}
		desc.ArtifactType = ""
		desc.Platform = &v1.Platform{OS: "linux", Architecture: arches[i]}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: *desc})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx, adds...), nil
}

// push writes the image or index to ref in a registry, authenticated as
// docker login and credential helpers say.
func push(ctx context.Context, top partial.Describable, ref string) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("%w: -push %q: %w", errUsage, ref, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	switch v := top.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(r, v, opts...)
	case v1.Image:
		err = remote.Write(r, v, opts...)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// build assembles the image from three layers, least often changed first,
// so that a new binary does not re-ship the payload: the base, the payload,
// the binaries. Layer tars are staged in tmp.
func build(ctx context.Context, o options, arch, tmp string) (v1.Image, error) {
	type layerSpec struct {
		name, createdBy string
		write           func(*tarWriter) error
	}
	specs := []layerSpec{
		{"base", "imagebuild: /etc/passwd, /etc/group, /tmp", func(tw *tarWriter) error {
			for _, f := range baseFiles {
				if err := tw.file(f.name, f.mode, []byte(f.data)); err != nil {
					return err
				}
			}
			return tw.dir("tmp", 0o1777)
		}},
		{"payload", "imagebuild: Kata payload in " + payloadDir, func(tw *tarWriter) error {
			return tw.tree(ctx, o.payload, strings.TrimPrefix(payloadDir, "/"))
		}},
		{"binaries", "imagebuild: " + strings.Join(binaries, ", ") + " in " + binDir, func(tw *tarWriter) error {
			for _, b := range binaries {
				src := filepath.Join(o.binDir, b)
				if err := tw.copyFile(src, path.Join(strings.TrimPrefix(binDir, "/"), b), 0o755); err != nil {
					return err
				}
			}
			return nil
		}},
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: o.created}
	for _, s := range specs {
		p := filepath.Join(tmp, s.name+".tar")
		if err := writeTar(p, o.created, s.write); err != nil {
			return nil, fmt.Errorf("%s layer: %w", s.name, err)
		}
		l, err := tarball.LayerFromFile(p, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("%s layer: %w", s.name, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: created, CreatedBy: s.createdBy},
		})
		if err != nil {
			return nil, fmt.Errorf("%s layer: %w", s.name, err)
		}
	}

	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = arch, "linux"
	cf.Created = created
	cf.Config = imageConfig()
	cf.Config.Labels = labels(o)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// labels are the OCI annotations the Dockerfile sets with LABEL.
func labels(o options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "kata-deploy",
		"org.opencontainers.image.description": "Installs Kata Containers onto Kubernetes nodes",
		"org.opencontainers.image.source":      imageSource,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.version":     o.version,
	}
	if o.revision != "" {
		l["org.opencontainers.image.revision"] = o.revision
	}
	l["io.katacontainers.version"] = o.kataVersion
	return l
}

// writeLayoutTar writes img as an OCI image layout (oci-layout, index.json,
// blobs/) and packs it into out, replaced atomically. The index names the
// image as BuildKit does: io.containerd.image.name is the full reference
// (what ctr import uses), org.opencontainers.image.ref.name the tag.
func writeLayoutTar(ctx context.Context, top partial.Describable, ref, out, tmp string) error {
	dir := filepath.Join(tmp, "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	tag := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	// The descriptor is written by hand: partial.Descriptor fills in
	// artifactType (the OCI 1.1 referrers convention), which a plain image
	// in an index does not carry elsewhere (BuildKit, ctr export).
	desc, err := partial.Descriptor(top)
	if err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	desc.ArtifactType = ""
	desc.Annotations = map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": tag,
	}
	switch v := top.(type) {
	case v1.ImageIndex:
		err = p.WriteIndex(v)
	case v1.Image:
		var cf *v1.ConfigFile
		if cf, err = v.ConfigFile(); err == nil {
			desc.Platform = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}
			err = p.WriteImage(v)
		}
	}
	if err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	if err := p.AppendDescriptor(*desc); err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	tmpOut := filepath.Join(tmp, "image.tar")
	err = writeTar(tmpOut, time.Unix(0, 0).UTC(), func(tw *tarWriter) error {
		return tw.tree(ctx, dir, "")
	})
	if err != nil {
		return fmt.Errorf("pack image layout: %w", err)
	}
	if err := os.Rename(tmpOut, out); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// tarWriter writes a reproducible tar: owner 0:0, one fixed time, and each
// parent directory once, before its entries.
type tarWriter struct {
	tw    *tar.Writer
	mtime time.Time
	dirs  map[string]bool
}

func writeTar(name string, mtime time.Time, fill func(*tarWriter) error) (err error) {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	tw := &tarWriter{tw: tar.NewWriter(f), mtime: mtime, dirs: map[string]bool{}}
	if err := fill(tw); err != nil {
		return err
	}
	return tw.tw.Close()
}

func (w *tarWriter) header(name string, typ byte, mode int64) *tar.Header {
	return &tar.Header{Typeflag: typ, Name: name, Mode: mode, ModTime: w.mtime, Format: tar.FormatPAX}
}

// parents adds the directories above name that are not in the tar yet.
func (w *tarWriter) parents(name string) error {
	d := path.Dir(name)
	if d == "." || d == "/" || w.dirs[d] {
		return nil
	}
	if err := w.parents(d); err != nil {
		return err
	}
	w.dirs[d] = true
	return w.tw.WriteHeader(w.header(d+"/", tar.TypeDir, 0o755))
}

func (w *tarWriter) dir(name string, mode int64) error {
	if w.dirs[name] {
		return nil
	}
	if err := w.parents(name); err != nil {
		return err
	}
	w.dirs[name] = true
	return w.tw.WriteHeader(w.header(name+"/", tar.TypeDir, mode))
}

func (w *tarWriter) file(name string, mode int64, data []byte) error {
	if err := w.parents(name); err != nil {
		return err
	}
	h := w.header(name, tar.TypeReg, mode)
	h.Size = int64(len(data))
	if err := w.tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := w.tw.Write(data)
	return err
}

// copyFile adds the regular file src as name. mode 0 keeps src's mode.
func (w *tarWriter) copyFile(src, name string, mode int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	if mode == 0 {
		mode = int64(fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	}
	if err := w.parents(name); err != nil {
		return err
	}
	h := w.header(name, tar.TypeReg, mode)
	h.Size = fi.Size()
	if err := w.tw.WriteHeader(h); err != nil {
		return err
	}
	if _, err := io.Copy(w.tw, f); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return nil
}

// tree adds the directory tree root under prefix, in lexical order, with
// its modes and symlinks as they are (Kata's payload links configuration
// files to each other). Other file types have no place in an image.
func (w *tarWriter) tree(ctx context.Context, root, prefix string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		if name == "" || name == "." {
			return nil // the layout's own root: entries are relative to it
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		perm := int64(fi.Mode().Perm())
		if rel == "." {
			// The root is the image's directory, not the caller's (a
			// temporary directory is 0700).
			perm = 0o755
		}
		switch {
		case d.IsDir():
			return w.dir(name, perm)
		case fi.Mode().IsRegular():
			return w.copyFile(p, name, 0)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := w.parents(name); err != nil {
				return err
			}
			h := w.header(name, tar.TypeSymlink, 0o777)
			h.Linkname = target
			return w.tw.WriteHeader(h)
		}
		return fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
	})
}
