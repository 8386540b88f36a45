package hostfs

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"sort"
)

func readAll(f *os.File) ([]byte, error) {
	var buf bytes.Buffer
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		buf.Grow(int(fi.Size()) + 1)
	}
	_, err := io.Copy(&buf, f)
	return buf.Bytes(), err
}

func sortEntries(entries []fs.DirEntry) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
}
