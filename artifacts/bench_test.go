package artifacts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/tarsafe"
	"github.com/kata-deploy/kata-deploy/runtime"
	"gotest.tools/v3/assert"
)

// genPayload writes a kata-static payload of about total bytes below dir:
// a few large files (image, initrd, kernels, hypervisors) and many small
// ones, filled with data that compresses about 2:1 like binaries do, from
// a fixed seed.
func genPayload(dir string, total int64) error {
	rnd := rand.New(rand.NewPCG(1, 2))
	tree := filepath.Join(dir, "opt/kata")
	type f struct {
		name string
		frac float64
		mode os.FileMode
	}
	big := []f{
		{"share/kata-containers/kata-containers.img", 0.30, 0o644},
		{"share/kata-containers/kata-containers-initrd.img", 0.15, 0o644},
		{"share/kata-containers/vmlinux-6.12.img", 0.05, 0o644},
		{"share/kata-containers/vmlinuz-6.12.img", 0.05, 0o644},
		{"bin/qemu-system-x86_64", 0.08, 0o755},
		{"bin/cloud-hypervisor", 0.04, 0o755},
		{"bin/firecracker", 0.03, 0o755},
		{"bin/containerd-shim-kata-v2", 0.05, 0o755},
		{"runtime-rs/bin/containerd-shim-kata-v2", 0.05, 0o755},
	}
	var files []f
	files = append(files, big...)
	// The rest as 200 small files (firmware, qemu data, libexec helpers).
	for i := range 200 {
		files = append(files, f{fmt.Sprintf("share/kata-qemu/qemu/data-%03d.bin", i), 0.20 / 200, 0o644})
	}
	buf := make([]byte, 1<<20)
	for _, x := range files {
		p := filepath.Join(tree, x.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, x.mode)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(out, 1<<20)
		left := int64(float64(total) * x.frac)
		for left > 0 {
			n := min(int64(len(buf)), left)
			// Half random, half runs of a few byte values.
			for i := int64(0); i < n; i += 4096 {
				end := min(i+4096, n)
				if rnd.IntN(2) == 0 {
					for j := i; j < end; j += 8 {
						v := rnd.Uint64()
						for k := j; k < min(j+8, end); k++ {
							buf[k] = byte(v)
							v >>= 8
						}
					}
				} else {
					b := byte(rnd.IntN(4))
					for j := i; j < end; j++ {
						buf[j] = b
					}
				}
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			left -= n
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
	cfg := filepath.Join(tree, runtime.Shim{}.ConfigDir())
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		return err
	}
	for _, shim := range []string{"qemu", "clh", "fc"} {
		hv := map[string]string{"qemu": "qemu", "clh": "clh", "fc": "firecracker"}[shim]
		data := fmt.Sprintf("[hypervisor.%s]\npath = \"/opt/kata/bin/x\"\nkernel_params = \"\"\n\n[agent.kata]\n\n[runtime]\n", hv)
		if err := os.WriteFile(filepath.Join(cfg, "configuration-"+shim+".toml"), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchJob is one run driven by hack/bench-artifacts.sh.
type benchJob struct {
	Op          string // generate, install, uninstall
	Host        string
	Payload     string
	Size        int64
	PerFileSync bool
	NoKick      bool
}

// TestBenchHelper runs one benchJob from KATA_DEPLOY_BENCH_JOB and prints
// the elapsed time and what the process wrote (from /proc/self/io).
func TestBenchHelper(t *testing.T) {
	spec := os.Getenv("KATA_DEPLOY_BENCH_JOB")
	if spec == "" {
		t.Skip("driven by hack/bench-artifacts.sh")
	}
	var j benchJob
	assert.NilError(t, json.Unmarshal([]byte(spec), &j))
	var opts []Option
	if j.PerFileSync {
		opts = append(opts, withPerFileSync())
	}
	if j.NoKick {
		opts = append(opts, func(c *config) { c.noKick = true })
	}
	io0 := procIO(t)
	start := time.Now()
	if os.Getenv("KATA_DEPLOY_BENCH_STEPS") != "" {
		last := ""
		opts = append(opts, withStepHook(func(s string) {
			if s != last || s != "copied" {
				fmt.Printf("step %-10s %6.1f ms\n", s, float64(time.Since(start).Microseconds())/1000)
			}
			last = s
		}))
	}
	var err error
	var rep *Report
	switch j.Op {
	case "generate":
		err = genPayload(j.Payload, j.Size)
	case "install":
		rep, err = Install(context.Background(), j.Host, j.Payload, opts...)
	case "uninstall":
		rep, err = Uninstall(context.Background(), j.Host, opts...)
	}
	elapsed := time.Since(start)
	assert.NilError(t, err)
	io1 := procIO(t)
	changes := 0
	if rep != nil {
		changes = len(rep.Added) + len(rep.Changed) + len(rep.Removed)
	}
	fmt.Printf("BENCH op=%s elapsed_ms=%.1f write_bytes=%d syscw=%d changes=%d\n", j.Op,
		float64(elapsed.Microseconds())/1000, io1["write_bytes"]-io0["write_bytes"], io1["syscw"]-io0["syscw"], changes)
}

func procIO(t *testing.T) map[string]int64 {
	data, err := os.ReadFile("/proc/self/io")
	assert.NilError(t, err)
	out := map[string]int64{}
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if ok {
			out[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return out
}

func benchPayload(b *testing.B, size int64) string {
	b.Helper()
	dir := b.TempDir()
	assert.NilError(b, genPayload(dir, size))
	return dir
}

// benchInstall installs payload (64 MiB) onto a fresh host per round.
func benchInstall(b *testing.B, payload string) {
	b.SetBytes(64 << 20)
	for b.Loop() {
		b.StopTimer()
		host := b.TempDir()
		b.StartTimer()
		_, err := Install(context.Background(), host, payload)
		assert.NilError(b, err)
	}
}

func BenchmarkInstallDirectory(b *testing.B) {
	benchInstall(b, benchPayload(b, 64<<20))
}

// BenchmarkTarball compares, per compression, a full install with a pass
// that only reads the archive's headers (what a pre-scan of the declared
// sizes would cost before staging: the whole archive is decompressed, its
// contents discarded). The figures chose checking the room as entries
// arrive over a pre-scan (docs/artifacts-performance.md).
func BenchmarkTarball(b *testing.B) {
	payload := benchPayload(b, 64<<20)
	for _, comp := range []struct{ name, flag string }{
		{"zst", "--zstd"},
		{"xz", "--use-compress-program=xz -1"},
	} {
		tb := filepath.Join(b.TempDir(), "p.tar."+comp.name)
		out, err := run(b, "tar", comp.flag, "-cf", tb, "-C", payload, ".")
		assert.NilError(b, err, out)
		b.Run("scan-"+comp.name, func(b *testing.B) {
			b.SetBytes(64 << 20)
			for b.Loop() {
				_, err := scanHeaders(tb)
				assert.NilError(b, err)
			}
		})
		b.Run("install-"+comp.name, func(b *testing.B) { benchInstall(b, tb) })
	}
}

// scanHeaders reads every header of the archive at file, as a pre-scan
// would, and returns the sum of the declared sizes.
func scanHeaders(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tr, err := tarsafe.NewReader(f, tarsafe.Limits{})
	if err != nil {
		return 0, err
	}
	defer tr.Close()
	var total int64
	for {
		e, err := tr.Next()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return 0, err
		}
		total += e.Size
	}
}

func BenchmarkReinstallUnchanged(b *testing.B) {
	payload := benchPayload(b, 64<<20)
	host := b.TempDir()
	_, err := Install(context.Background(), host, payload)
	assert.NilError(b, err)
	for b.Loop() {
		rep, err := Install(context.Background(), host, payload)
		assert.NilError(b, err)
		assert.Assert(b, !rep.HasChanges())
	}
}

func run(tb testing.TB, name string, args ...string) (string, error) {
	tb.Helper()
	out, err := osexec.Command(name, args...).CombinedOutput()
	return string(out), err
}
