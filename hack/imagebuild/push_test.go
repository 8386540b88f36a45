package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// TestPushIndex builds for amd64 and arm64 (a payload and binaries per
// architecture) and pushes the index to an in-process registry, as
// `make image PUSH=...` does: no daemon anywhere. What the registry serves
// must be one image per platform, each with its own payload and the
// io.katacontainers.version label.
func TestPushIndex(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	assert.NilError(t, err)
	ref := u.Host + "/kata-deploy:test"

	dir := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		fixture(t, filepath.Join(dir, arch))
		// Tell the architectures' payloads apart.
		shim := filepath.Join(dir, arch, "payload/opt/kata/bin/containerd-shim-kata-v2")
		assert.NilError(t, os.WriteFile(shim, []byte("shim for "+arch+"\n"), 0o755))
	}
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"-arch", "amd64,arm64",
		"-bin-dir", filepath.Join(dir, "{arch}", "bin"), "-payload", filepath.Join(dir, "{arch}", "payload"),
		"-kata-version", "3.32.0", "-push", ref}, &stdout, &stderr)
	assert.NilError(t, err, stderr.String())

	r, err := name.ParseReference(ref)
	assert.NilError(t, err)
	idx, err := remote.Index(r)
	assert.NilError(t, err)
	im, err := idx.IndexManifest()
	assert.NilError(t, err)
	var archs, payloads []string
	for _, m := range im.Manifests {
		archs = append(archs, m.Platform.Architecture)
		img, err := idx.Image(m.Digest)
		assert.NilError(t, err)
		cf, err := img.ConfigFile()
		assert.NilError(t, err)
		assert.Check(t, is.Equal(cf.Architecture, m.Platform.Architecture))
		assert.Check(t, is.Equal(cf.Config.Labels["io.katacontainers.version"], "3.32.0"))
		files := listing(t, img)
		assert.Check(t, slices.Contains(files, "0 0755 0:0 opt/kata-artifacts/opt/kata/bin/containerd-shim-kata-v2"), "%v", files)
		layers, err := img.Layers()
		assert.NilError(t, err)
		d, err := layers[1].Digest() // the payload layer
		assert.NilError(t, err)
		payloads = append(payloads, d.String())
	}
	assert.Check(t, len(payloads) == 2 && payloads[0] != payloads[1], "both architectures got the same payload")
	assert.Check(t, is.DeepEqual(archs, []string{"amd64", "arm64"}))
	assert.Check(t, is.Contains(stdout.String(), "pushed "+ref))
}

// TestSingleArchStaysAnImage: the default build (amd64, -out) is the OCI
// archive of one image that ctr import and skopeo take, as before.
func TestSingleArchStaysAnImage(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "image.tar")
	buildImage(t, dir, out)
	desc, img := readLayout(t, out)
	assert.Check(t, is.Equal(desc.Platform.Architecture, "amd64"))
	cf, err := img.ConfigFile()
	assert.NilError(t, err)
	assert.Check(t, is.Equal(cf.Config.Labels["io.katacontainers.version"], "3.32.0"))

	var stderr bytes.Buffer
	err = run(context.Background(), []string{"-arch", "amd64,arm64", "-bin-dir", "b", "-payload", "p", "-out", out}, &bytes.Buffer{}, &stderr)
	assert.Check(t, is.ErrorContains(err, "{arch}"))
}
