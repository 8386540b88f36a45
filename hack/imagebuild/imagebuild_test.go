package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/kata-deploy/kata-deploy/internal/testing/testbed"
)

// fixture writes stub binaries and a small payload shaped like kata-static
// (a shim, a configuration, the symlink Kata ships between configurations)
// and returns the flags that build an image from them into dir.
func fixture(t *testing.T, dir string) []string {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	payload := filepath.Join(dir, "payload")
	files := map[string]string{}
	for _, b := range binaries {
		files[filepath.Join(bin, b)] = "#!/bin/true stub " + b + "\n"
	}
	defaults := filepath.Join(payload, "opt/kata/share/defaults/kata-containers")
	files[filepath.Join(payload, "opt/kata/bin/containerd-shim-kata-v2")] = "stub shim\n"
	files[filepath.Join(defaults, "configuration-qemu.toml")] = "[hypervisor.qemu]\n"
	for p, data := range files {
		assert.NilError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		assert.NilError(t, os.WriteFile(p, []byte(data), 0o755))
	}
	assert.NilError(t, os.Chmod(filepath.Join(defaults, "configuration-qemu.toml"), 0o644))
	assert.NilError(t, os.Symlink("configuration-qemu.toml", filepath.Join(defaults, "configuration.toml")))
	return []string{"-bin-dir", bin, "-payload", payload, "-kata-version", "3.32.0", "-version", "test"}
}

func buildImage(t *testing.T, dir, out string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args := append(fixture(t, dir), "-out", out)
	err := run(context.Background(), args, &stdout, &stderr)
	assert.NilError(t, err, stderr.String())
	t.Log(strings.TrimSpace(stdout.String()))
}

// readLayout unpacks the tarball and returns its index's one manifest
// descriptor and image.
func readLayout(t *testing.T, tarPath string) (v1.Descriptor, v1.Image) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(tarPath)
	assert.NilError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		assert.NilError(t, err)
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			assert.NilError(t, os.MkdirAll(p, 0o755))
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			assert.NilError(t, err)
			assert.NilError(t, os.WriteFile(p, b, 0o644))
		default:
			t.Fatalf("unexpected entry %s in the layout tarball", h.Name)
		}
	}
	ii, err := layout.ImageIndexFromPath(dir)
	assert.NilError(t, err)
	im, err := ii.IndexManifest()
	assert.NilError(t, err)
	assert.Equal(t, len(im.Manifests), 1)
	img, err := ii.Image(im.Manifests[0].Digest)
	assert.NilError(t, err)
	return im.Manifests[0], img
}

// listing is the image's flattened file system, one line per entry:
// type, mode, owner, name (and link target).
func listing(t *testing.T, img v1.Image) []string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		assert.NilError(t, err)
		line := fmt.Sprintf("%c %04o %d:%d %s", h.Typeflag, h.Mode, h.Uid, h.Gid, h.Name)
		if h.Linkname != "" {
			line += " -> " + h.Linkname
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

func TestImage(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := t.TempDir()
	out := filepath.Join(dir, "image.tar")
	buildImage(t, dir, out)

	desc, img := readLayout(t, out)
	assert.DeepEqual(t, desc.Annotations, map[string]string{
		"io.containerd.image.name":          defaultRef,
		"org.opencontainers.image.ref.name": "latest",
	})
	assert.DeepEqual(t, desc.Platform, &v1.Platform{OS: "linux", Architecture: "amd64"})
	assert.Equal(t, desc.ArtifactType, "", "a plain image, not an artifact")

	cf, err := img.ConfigFile()
	assert.NilError(t, err)
	assert.DeepEqual(t, cf.Config.Entrypoint, []string{"/usr/local/bin/kata-installer"})
	assert.DeepEqual(t, cf.Config.Cmd, []string{"install"})
	assert.Equal(t, cf.Config.User, "0:0")
	assert.DeepEqual(t, cf.Config.Env, []string{"PATH=/usr/local/bin", "KATA_PAYLOAD=/opt/kata-artifacts", "KATA_HOST_ROOT=/host"})
	assert.Equal(t, cf.Config.Labels["io.katacontainers.version"], "3.32.0")
	assert.Equal(t, cf.Config.Labels["org.opencontainers.image.version"], "test")
	assert.Equal(t, cf.Created.Unix(), int64(1700000000))
	assert.Equal(t, cf.OS+"/"+cf.Architecture, "linux/amd64")
	layers, err := img.Layers()
	assert.NilError(t, err)
	assert.Equal(t, len(layers), 3, "base, payload, binaries")

	// mutate.Extract drops the trailing slash of directory names.
	assert.DeepEqual(t, listing(t, img), []string{
		"0 0644 0:0 etc/group",
		"0 0644 0:0 etc/passwd",
		"0 0644 0:0 opt/kata-artifacts/opt/kata/share/defaults/kata-containers/configuration-qemu.toml",
		"0 0755 0:0 opt/kata-artifacts/opt/kata/bin/containerd-shim-kata-v2",
		"0 0755 0:0 usr/local/bin/kata-cleanup",
		"0 0755 0:0 usr/local/bin/kata-installer",
		"0 0755 0:0 usr/local/bin/kata-labeler",
		"2 0777 0:0 opt/kata-artifacts/opt/kata/share/defaults/kata-containers/configuration.toml -> configuration-qemu.toml",
		"5 0755 0:0 etc",
		"5 0755 0:0 opt",
		"5 0755 0:0 opt/kata-artifacts",
		"5 0755 0:0 opt/kata-artifacts/opt",
		"5 0755 0:0 opt/kata-artifacts/opt/kata",
		"5 0755 0:0 opt/kata-artifacts/opt/kata/bin",
		"5 0755 0:0 opt/kata-artifacts/opt/kata/share",
		"5 0755 0:0 opt/kata-artifacts/opt/kata/share/defaults",
		"5 0755 0:0 opt/kata-artifacts/opt/kata/share/defaults/kata-containers",
		"5 0755 0:0 usr",
		"5 0755 0:0 usr/local",
		"5 0755 0:0 usr/local/bin",
		"5 1777 0:0 tmp",
	})

	// The same inputs give the same bytes, so the same digest.
	dir2 := t.TempDir()
	out2 := filepath.Join(dir2, "image.tar")
	buildImage(t, dir2, out2)
	assert.Equal(t, fileSHA256(t, out), fileSHA256(t, out2), "the build is not reproducible")
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	assert.NilError(t, err)
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-payload", "x"}, &stdout, &stderr)
	assert.Assert(t, errors.Is(err, errUsage), err)
	assert.Check(t, is.Contains(stderr.String(), "-bin-dir"))
}

// TestDockerfileAgrees compares the Dockerfile's final stage with what
// imagebuild writes, so that the two builds cannot drift: entrypoint,
// command, user, working directory, environment, label keys, where each
// COPY puts its files, and the base files' bytes.
func TestDockerfileAgrees(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	assert.NilError(t, err)
	// Join continuation lines, drop comments.
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var final []string
	for _, l := range lines {
		if strings.HasPrefix(l, "FROM ") {
			final = nil
		}
		final = append(final, l)
	}
	assert.Equal(t, final[0], "FROM scratch")

	cfg := imageConfig()
	jsonOf := func(v []string) string { b, _ := json.Marshal(v); return string(b) }
	want := map[string]string{
		"ENTRYPOINT": jsonOf(cfg.Entrypoint),
		"CMD":        jsonOf(cfg.Cmd),
		"USER":       cfg.User,
		"WORKDIR":    cfg.WorkingDir,
		"ENV":        strings.Join(cfg.Env, " "),
	}
	var copies []string
	labelKeys := regexp.MustCompile(`([a-z0-9.]+)="[^"]*"`)
	var gotLabels []string
	for _, l := range final[1:] {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.Join(strings.Fields(rest), " ")
		switch instr {
		case "COPY":
			f := strings.Fields(rest)
			copies = append(copies, strings.Join(f[1:], " "))
		case "LABEL":
			for _, m := range labelKeys.FindAllStringSubmatch(rest, -1) {
				gotLabels = append(gotLabels, m[1])
			}
		case "ARG":
		default:
			w, ok := want[instr]
			if !assert.Check(t, ok, "instruction %s is unknown to imagebuild", instr) {
				continue
			}
			assert.Check(t, is.Equal(rest, w), instr)
			delete(want, instr)
		}
	}
	assert.Check(t, is.Len(want, 0), "instructions missing from the Dockerfile: %v", want)

	var bins []string
	for _, b := range binaries {
		bins = append(bins, "/out/"+b)
	}
	assert.DeepEqual(t, copies, []string{
		"/rootfs/ /",
		payloadDir + "/ " + payloadDir + "/",
		strings.Join(bins, " ") + " " + binDir + "/",
	})

	wantLabels := labels(options{version: "v", kataVersion: "k"})
	var keys []string
	for k := range wantLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(gotLabels)
	assert.DeepEqual(t, gotLabels, keys)

	for _, f := range baseFiles {
		printf := fmt.Sprintf("printf '%s' > /rootfs/%s", strings.ReplaceAll(f.data, "\n", `\n`), f.name)
		assert.Check(t, is.Contains(string(b), printf), "the Dockerfile writes %s differently", f.name)
	}
}

// TestImportIntoContainerd imports the tarball into the containerd of
// testbed nodes with ctr, as a user without a registry would. ctr unpacks
// it into the snapshotter, which checks every layer against its diff ID.
func TestImportIntoContainerd(t *testing.T) {
	testbed.Require(t)
	dir := t.TempDir()
	imageDir := filepath.Join(dir, "image")
	assert.NilError(t, os.Mkdir(imageDir, 0o755))
	buildImage(t, dir, filepath.Join(imageDir, "kata-deploy.tar"))

	for _, f := range []testbed.Flavour{testbed.Containerd16, testbed.Containerd2} {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			n := testbed.StartNode(t, f, testbed.WithBind(imageDir, "/mnt/image"))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := n.Exec(ctx, "ctr", "-n", "k8s.io", "images", "import", "/mnt/image/kata-deploy.tar")
			assert.NilError(t, err)
			t.Logf("ctr images import: %s", bytes.TrimSpace(out))

			out, err = n.Exec(ctx, "ctr", "-n", "k8s.io", "images", "ls")
			assert.NilError(t, err)
			var found string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, defaultRef+" ") {
					found = l
				}
			}
			assert.Assert(t, found != "", "ctr images ls:\n%s", out)
			assert.Check(t, is.Contains(found, "linux/amd64"))
			t.Logf("ctr images ls: %s", strings.Join(strings.Fields(found), " "))

			// Unpacked for the CRI's snapshotter, so a pod could start from it.
			out, err = n.Exec(ctx, "ctr", "-n", "k8s.io", "images", "check")
			assert.NilError(t, err)
			assert.Check(t, is.Regexp(regexp.QuoteMeta(defaultRef)+`\s+application/vnd.oci.image.manifest.v1\+json\s+sha256:[0-9a-f]+\s+complete`, string(out)))
		})
	}
}
