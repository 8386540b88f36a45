package hostfs

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"sort"
)

// readAll reads r to its end, sized by f's size when it has one.
func readAll(r io.Reader, f *os.File) ([]byte, error) {
	var buf bytes.Buffer
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		buf.Grow(int(fi.Size()) + 1)
	}
	_, err := io.Copy(&buf, r)
	return buf.Bytes(), err
}

func sortEntries(entries []fs.DirEntry) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
}
