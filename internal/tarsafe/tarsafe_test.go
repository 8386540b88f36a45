package tarsafe

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"testing"

	"github.com/klauspost/compress/gzip"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func archive(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		assert.NilError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			assert.NilError(t, err)
		}
	}
	assert.NilError(t, tw.Close())
	return b.Bytes()
}

func readAll(t *testing.T, data []byte, limits Limits) ([]*Entry, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), limits)
	assert.NilError(t, err)
	defer r.Close()
	var out []*Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func TestAcceptsOrdinaryEntries(t *testing.T) {
	data := archive(t,
		&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "./opt/kata/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "./opt/kata/bin/shim", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3},
		&tar.Header{Name: "./opt/kata/bin/shim2", Typeflag: tar.TypeLink, Linkname: "./opt/kata/bin/shim"},
		&tar.Header{Name: "./opt/kata/share/k", Typeflag: tar.TypeSymlink, Linkname: "../bin/shim"},
		&tar.Header{Name: "./opt/kata/tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
	)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(data)
	assert.NilError(t, zw.Close())
	for _, d := range [][]byte{data, gz.Bytes()} {
		entries, err := readAll(t, d, Limits{})
		assert.NilError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name)
		}
		assert.Check(t, is.DeepEqual(names, []string{"opt/kata/bin", "opt/kata/bin/shim", "opt/kata/bin/shim2", "opt/kata/share/k", "opt/kata/tmp"}))
		assert.Check(t, is.Equal(entries[2].Target, "opt/kata/bin/shim"))
		assert.Check(t, entries[4].Mode&fs.ModeSticky != 0, "sticky kept")
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hdrs   []*tar.Header
		limits Limits
		want   error
	}{
		{"absolute", []*tar.Header{{Name: "/etc/x", Typeflag: tar.TypeReg}}, Limits{}, ErrAbsolutePath},
		{"dotdot", []*tar.Header{{Name: "a/../../x", Typeflag: tar.TypeReg}}, Limits{}, ErrDotDot},
		{"symlink absolute", []*tar.Header{{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "/etc"}}, Limits{}, ErrLinkOutside},
		{"symlink climbs", []*tar.Header{{Name: "a/b", Typeflag: tar.TypeSymlink, Linkname: "../../x"}}, Limits{}, ErrLinkOutside},
		{"symlink climbs late", []*tar.Header{{Name: "a/b", Typeflag: tar.TypeSymlink, Linkname: "c/../../x"}}, Limits{}, ErrLinkOutside},
		{"hard link absolute", []*tar.Header{{Name: "a", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}}, Limits{}, ErrLinkOutside},
		{"device", []*tar.Header{{Name: "a", Typeflag: tar.TypeChar}}, Limits{}, ErrSpecialFile},
		{"setuid", []*tar.Header{{Name: "a", Typeflag: tar.TypeReg, Mode: 0o4755}}, Limits{}, ErrSetuid},
		{"below symlink", []*tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d"}, {Name: "l/x", Typeflag: tar.TypeReg}}, Limits{}, ErrBelowLink},
		{"duplicate", []*tar.Header{{Name: "a", Typeflag: tar.TypeReg}, {Name: "./a", Typeflag: tar.TypeReg}}, Limits{}, ErrDuplicate},
		{"too large", []*tar.Header{{Name: "a", Typeflag: tar.TypeReg, Size: 10}, {Name: "b", Typeflag: tar.TypeReg, Size: 10}}, Limits{MaxBytes: 15}, ErrTooLarge},
		{"too many", []*tar.Header{{Name: "a", Typeflag: tar.TypeDir}, {Name: "b", Typeflag: tar.TypeDir}}, Limits{MaxEntries: 1}, ErrTooMany},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(t, archive(t, tc.hdrs...), tc.limits)
			assert.Check(t, errors.Is(err, tc.want), "got %v", err)
			var ee *EntryError
			assert.Check(t, errors.As(err, &ee))
		})
	}
}
