package tomltext

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// decodeCases are documents whose meaning, or rejection, Decode must share
// with go-toml: redefinitions in every shape the tracker tells apart.
var decodeCases = []string{
	"",
	"a = 1\nb = 'x'\nc = [1, 2.5, true, \"s\"]\n",
	"[a]\n[a.b]\nx = 1\n",
	"[a.b]\nx = 1\n[a]\ny = 2\n",
	"[a.b]\n[a]\n[a]\n",
	"[a]\nx = 1\n[a]\ny = 2\n",
	"a = 1\na = 2\n",
	"a.b = 1\na.c = 2\n",
	"a.b = 1\n[a]\n",
	"a.b = 1\n[a.c]\nx = 1\n",
	"[x]\na.b = 1\n[x.a.c]\n",
	"[x.y]\n[x]\ny.z = 1\n",
	"a = {b = 1}\na.c = 2\n",
	"a = {b = 1}\n[a.c]\n",
	"a = {b.c = 1, b.d = 2}\n",
	"a = {b = 1, b = 2}\n",
	"[[a]]\nx = 1\n[[a]]\nx = 2\n[a.b]\ny = 3\n",
	"[[a]]\n[a]\n",
	"[a]\n[[a]]\n",
	"a = []\n[[a]]\n",
	"a = [{x = 1}, {x = 2}]\n",
	"[[a.b]]\n[[a.b]]\n[a.b.c]\nz = 1\n",
	"[[a]]\n[a.b]\n[[a]]\n[a.b]\n",
	"n = 0x1F\no = 0o17\nb = 0b101\nd = -1_000\nf = 1e3\ni = -inf\nj = +inf\n",
	"big = 9223372036854775807\n",
	"toobig = 9223372036854775808\n",
	"toobighex = 0xFFFFFFFFFFFFFFFF\n",
	"d = 1979-05-27T07:32:00Z\nl = 1979-05-27T07:32:00\nld = 1979-05-27\nlt = 07:32:00\n",
	"s = \"\\u00e9\\t\"\nm = '''\nmulti\n'''\n",
	"a = [\n  1, # one\n  2,\n]\n",
	"[ 'quoted . key' ]\nx = 1\n",
	"a = \"unterminated\n",
	"= 1\n",
	"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n",
	// From the engines' hostile fixtures: an unclosed table header, and
	// nested inline tables under a quoted key.
	"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\nsandbox_image = \"x\"\n",
	"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  runtimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n",
}

func TestDecodeMatchesGoTOML(t *testing.T) {
	docs := map[string][]byte{}
	for i, c := range decodeCases {
		docs[filepath.Join("case", string(rune('a'+i)))] = []byte(c)
	}
	// The real-world containerd and CRI-O configs (testdata/README.md).
	files, err := filepath.Glob("../../testdata/*/*")
	assert.NilError(t, err)
	assert.Assert(t, len(files) > 0, "no configs in ../../testdata")
	for _, f := range files {
		data, err := os.ReadFile(f)
		assert.NilError(t, err)
		docs[f] = data
	}
	for name, data := range docs {
		checkSame(t, name, data)
	}
}

func checkSame(t *testing.T, name string, data []byte) {
	t.Helper()
	var want map[string]any
	werr := toml.Unmarshal(data, &want)
	got, gerr := Decode(context.Background(), data)
	if (werr == nil) != (gerr == nil) {
		t.Errorf("%s: go-toml says %v, Decode says %v\n%s", name, werr, gerr, data)
		return
	}
	if werr != nil {
		return
	}
	if want == nil {
		want = map[string]any{}
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("%s: go-toml gives %#v, Decode gives %#v", name, want, got)
	}
}

func FuzzDecodeMatchesGoTOML(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4<<10 {
			return
		}
		checkSame(t, "fuzz", data)
	})
}

func TestDecodeStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Decode(ctx, manyKeys(1<<20))
	assert.ErrorIs(t, err, context.Canceled)
}

func TestExcerpt(t *testing.T) {
	assert.Check(t, is.Equal(Excerpt([]byte("root:$6$salt:19000")), `"root:$6$salt:19000"`))
	long := Excerpt([]byte("0123456789012345678901234567890123456789-and-more"))
	assert.Check(t, is.Equal(long, `"0123456789012345678901234567890123456789"...`))
	assert.Check(t, is.Equal(Excerpt([]byte("\x00\x1b[2J\xff")), `"\x00\x1b[2J\xff"`))
	// A cut never leaves half a UTF-8 sequence.
	assert.Check(t, is.Equal(Excerpt([]byte("0123456789012345678901234567890123456789"[:39]+"é")), `"012345678901234567890123456789012345678"...`))
}

func TestLines(t *testing.T) {
	data := []byte("a\nbc\n\nd")
	l := NewLines(data)
	for off, want := range []int{1, 1, 2, 2, 2, 3, 4} {
		assert.Check(t, is.Equal(l.Line(off), want), "offset %d", off)
	}
}

func TestKeyLine(t *testing.T) {
	doc := []byte(`version = 2
# a comment
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
  kata-qemu.runtime_type = "io.containerd.kata.v2"
  kata-clh = { runtime_type = "io.containerd.kata.v2" }

[[a.b]]
`)
	cri := []string{"plugins", "io.containerd.grpc.v1.cri", "containerd"}
	for _, tc := range []struct {
		keys []string
		want int
	}{
		{[]string{"version"}, 1},
		{cri, 3},
		{append(cri, "runtimes"), 6}, // a header under it defines it first
		{append(cri, "runtimes", "runc"), 6},
		{append(cri, "runtimes", "kata-qemu"), 10}, // dotted key under a header
		{append(cri, "runtimes", "kata-clh"), 11},  // inline table
		{[]string{"a", "b"}, 13},
		{append(cri, "runtimes", "kata-fc"), 0},
		{[]string{"plugins", "io.containerd.grpc.v1"}, 0}, // a quoted key is one part
		{nil, 0},
	} {
		assert.Check(t, is.Equal(KeyLine(doc, tc.keys...), tc.want), "%v", tc.keys)
	}
}
