package tomltext

// Hostile input: what a config path can point at on a node that is not
// ours (any file, any size, any bytes). See docs/hostile-hosts.md.

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// manyKeys is a document of about size bytes: one table with one key per
// line, the shape go-toml decodes in quadratic time.
func manyKeys(size int) []byte {
	var b bytes.Buffer
	b.WriteString("[t]\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "key_%d = %d\n", i, i)
	}
	return b.Bytes()
}

// manyInline is a document of inline tables, each of which records a
// position: the shape that made line lookups quadratic.
func manyInline(size int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "k%d = {a = %d}\n", i, i)
	}
	return b.Bytes()
}

func TestErrorsQuoteOnlyAShortEscapedExcerpt(t *testing.T) {
	for name, doc := range map[string][]byte{
		"shadow file":    []byte("root:$6$Xq9.secret.hash.that.must.not.leak.anywhere:19000:0:99999:7:::\n"),
		"20 MB line":     append([]byte("a = "), bytes.Repeat([]byte("x"), 20<<20)...),
		"binary garbage": []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x1b[2J\xff\xfe"),
		"long bad value": []byte("a = [" + strings.Repeat("1, ", 1<<20) + "nope]\n"),
		"long key twice": []byte(strings.Repeat("k", 1<<20) + " = 1\n" + strings.Repeat("k", 1<<20) + " = 2\n"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(context.Background(), doc)
			assert.Assert(t, err != nil)
			msg := err.Error()
			assert.Check(t, len(msg) < 200, "error of %d bytes: %.300s", len(msg), msg)
			assert.Check(t, !strings.Contains(msg, "must.not.leak"), msg)
			for _, r := range msg {
				assert.Check(t, r >= 0x20 && r < 0x7f, "unescaped byte %q in %q", r, msg)
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, mb := range []int{1, 4, 16} {
		for name, gen := range map[string]func(int) []byte{"keys": manyKeys, "inline": manyInline} {
			doc := gen(mb * 1000 * 1000)
			b.Run(fmt.Sprintf("%s-%dMB", name, mb), func(b *testing.B) {
				b.SetBytes(int64(len(doc)))
				for b.Loop() {
					if _, err := Decode(context.Background(), doc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestDecodeManyKeysIsLinear(t *testing.T) {
	// Not timed (benchmarks measure time): a million keys in one table
	// decode at all, which go-toml's tracker takes minutes for.
	if testing.Short() {
		t.Skip("large input")
	}
	got, err := Decode(context.Background(), manyKeys(8<<20))
	assert.NilError(t, err)
	assert.Check(t, is.Equal(got["t"].(map[string]any)["key_0"], int64(0)))
}
