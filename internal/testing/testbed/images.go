package testbed

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pauseTags are the sandbox images the nodes' runtimes ask for by default: containerd
// 1.6 (3.6), containerd 2.2 and CRI-O 1.34 (3.10.1), and the kubelet's own (3.10).
var pauseTags = []string{"3.6", "3.10", "3.10.1"}

// pushSandboxImages puts the testbed's pause program into the registry under every
// name a node's runtime or kubelet asks for.
func (c *Cluster) pushSandboxImages(ctx context.Context) error {
	bin, err := buildTool("pause")
	if err != nil {
		return err
	}
	img, err := BinaryImage(bin, "/pause")
	if err != nil {
		return err
	}
	for _, tag := range pauseTags {
		if err := c.PushImage(ctx, "registry.k8s.io/pause:"+tag, img); err != nil {
			return err
		}
	}
	return nil
}

// PushImage puts img into the cluster's registry so that every node's runtime pulls it
// as ref (for example docker.io/library/nginx:1.27): the registry holds it under ref's
// repository and tag, and stands in for ref's registry.
func (c *Cluster) PushImage(ctx context.Context, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	id := r.Identifier()
	sep := ":"
	if strings.HasPrefix(id, "sha256:") {
		sep = "@"
	}
	dst, err := name.ParseReference(c.registry+"/"+r.Context().RepositoryStr()+sep+id, name.Insecure)
	if err != nil {
		return fmt.Errorf("image reference %q in the cluster registry: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := remote.Write(dst, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// PushOCIArchive pushes the image of an OCI image layout tarball (what `make image`
// writes) as ref. The archive must hold one image.
func (c *Cluster) PushOCIArchive(ctx context.Context, ref, archive string) error {
	dir, err := os.MkdirTemp("", "testbed-oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := untar(archive, dir); err != nil {
		return fmt.Errorf("read %s: %w", archive, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", archive, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("read %s: %w", archive, err)
	}
	if len(m.Manifests) != 1 {
		return fmt.Errorf("%s holds %d manifests, want one image", archive, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return fmt.Errorf("read %s: %w", archive, err)
	}
	return c.PushImage(ctx, ref, img)
}

// BinaryImage is a linux/amd64 image holding only the static program bin at path, its
// entrypoint.
func BinaryImage(bin []byte, path string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(path, "/"), Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{path}
	return mutate.ConfigFile(img, cf)
}

// ToolImage builds one of the testbed's programs (internal/testing/testbed/internal/NAME) into
// an image whose entrypoint it is.
func ToolImage(name string) (v1.Image, error) {
	bin, err := buildTool(name)
	if err != nil {
		return nil, err
	}
	return BinaryImage(bin, "/"+name)
}

// untar extracts a tar archive of regular files and directories into dir.
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.Create(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}
