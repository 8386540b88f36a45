package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// document is one parsed containerd config file: its decoded values, and
// the byte offsets the engine needs to edit it without touching anything
// else.
type document struct {
	path    string
	data    []byte
	tree    map[string]any
	version int
	eol     string

	// afterVersion is the offset just past the version line, or -1.
	afterVersion int
	// firstTable is the offset of the first table header's line, or len(data).
	firstTable int
	// imports is the top-level imports array, if any.
	imports *importsArray
	// inline are the dotted keys whose value is an inline table or an array
	// of tables, which TOML forbids extending with [table] headers.
	inline map[string]int
	// block is the span of the engine's own managed block, if present.
	block *span
	// lines finds the line of an offset, for messages.
	lines tomltext.Lines
}

type span struct{ start, end int }

type importsArray struct {
	// start is the offset of the start of the line the key is on.
	start int
	line  int
	elems []importElem
	close int // offset of the closing bracket
}

type importElem struct {
	value      string
	start, end int
}

// parseDocument parses data as a containerd config. marker names the
// engine's managed block (see blockMarkers). It takes time linear in
// len(data) and stops when ctx ends.
func parseDocument(ctx context.Context, path string, data []byte, marker string) (*document, error) {
	d := &document{path: path, data: data, afterVersion: -1, firstTable: len(data), inline: map[string]int{}, eol: "\n"}
	if i := bytes.IndexByte(data, '\n'); i > 0 && data[i-1] == '\r' {
		d.eol = "\r\n"
	}
	tree, err := tomltext.Decode(ctx, data)
	if err != nil {
		return nil, tomltext.ConfigError(path, err)
	}
	d.tree = tree
	d.lines = tomltext.NewLines(data)
	if err := d.readVersion(); err != nil {
		return nil, err
	}
	if err := d.index(ctx, marker); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *document) readVersion() error {
	v, ok := d.tree["version"]
	if !ok {
		d.version = 1
		return nil
	}
	n, ok := v.(int64)
	if !ok {
		return &runtime.ConfigError{Path: d.path, Line: d.lineOfKey("version"), Key: "version", Err: fmt.Errorf("want an integer, got a %T", v)}
	}
	if oldest, newest := knownVersions(); n < int64(oldest) || n > int64(newest) {
		return &runtime.ConfigError{Path: d.path, Line: d.lineOfKey("version"), Key: "version", Err: fmt.Errorf("unknown containerd config version %d (known: %d to %d)", n, oldest, newest)}
	}
	d.version = int(n)
	return nil
}

// lineOfKey finds the line of a top-level key for an error message.
func (d *document) lineOfKey(key string) int {
	var p unstable.Parser
	p.Reset(d.data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind == unstable.Table || e.Kind == unstable.ArrayTable {
			return 0
		}
		if e.Kind == unstable.KeyValue && keyOf(e) == key {
			return d.line(int(e.Raw.Offset))
		}
	}
	return 0
}

// index walks the file's expressions once and records the offsets the
// edits need.
func (d *document) index(ctx context.Context, marker string) error {
	begin, end := blockMarkers(marker)
	var p unstable.Parser
	p.KeepComments = true
	p.Reset(d.data)
	var table string
	seenTable := false
	blockStart := -1
	for n := 0; p.NextExpression(); n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("read %s: %w", d.path, err)
			}
		}
		e := p.Expression()
		switch e.Kind {
		case unstable.Comment:
			text := strings.TrimSpace(string(e.Data))
			off := int(e.Raw.Offset)
			switch {
			case text == begin && blockStart < 0:
				blockStart = d.lineStart(off)
			case text == end && blockStart >= 0:
				d.block = &span{start: blockStart, end: d.lineEnd(off)}
			}
		case unstable.Table, unstable.ArrayTable:
			table = keyOf(e)
			if !seenTable {
				seenTable = true
				d.firstTable = d.lineStart(firstKeyOffset(e))
			}
			if e.Kind == unstable.ArrayTable {
				d.inline[table] = d.line(firstKeyOffset(e))
			}
		case unstable.KeyValue:
			key := keyOf(e)
			full := key
			if table != "" {
				full = table + "." + key
			}
			v := e.Value()
			if v.Kind == unstable.InlineTable || (v.Kind == unstable.Array && arrayOfTables(v)) {
				d.inline[full] = d.line(int(e.Raw.Offset))
			}
			if seenTable {
				continue
			}
			switch key {
			case "version":
				d.afterVersion = d.lineEnd(int(e.Raw.Offset + e.Raw.Length))
			case "imports":
				a, err := d.readImports(e)
				if err != nil {
					return err
				}
				d.imports = a
			}
		}
	}
	if err := p.Error(); err != nil {
		// Decode has parsed the same bytes without error.
		return &runtime.ConfigError{Path: d.path, Err: errors.New("internal error: malformed TOML")}
	}
	return nil
}

func (d *document) readImports(e *unstable.Node) (*importsArray, error) {
	v := e.Value()
	line := d.line(int(e.Raw.Offset))
	if v.Kind != unstable.Array {
		return nil, &runtime.ConfigError{Path: d.path, Line: line, Key: "imports", Err: errors.New("want an array of file paths")}
	}
	a := &importsArray{start: d.lineStart(int(e.Raw.Offset)), line: line, close: int(e.Raw.Offset+e.Raw.Length) - 1}
	it := v.Children()
	for it.Next() {
		n := it.Node()
		if n.Kind == unstable.Comment {
			continue
		}
		if n.Kind != unstable.String {
			return nil, &runtime.ConfigError{Path: d.path, Line: line, Key: "imports", Err: errors.New("want an array of strings")}
		}
		a.elems = append(a.elems, importElem{value: string(n.Data), start: int(n.Raw.Offset), end: int(n.Raw.Offset + n.Raw.Length)})
	}
	if d.data[a.close] != ']' {
		return nil, &runtime.ConfigError{Path: d.path, Line: line, Key: "imports", Err: errors.New("cannot find the end of the array")}
	}
	return a, nil
}

func arrayOfTables(v *unstable.Node) bool {
	it := v.Children()
	for it.Next() {
		if it.Node().Kind == unstable.InlineTable {
			return true
		}
	}
	return false
}

func keyOf(e *unstable.Node) string {
	var parts []string
	it := e.Key()
	for it.Next() {
		parts = append(parts, tomltext.Key(string(it.Node().Data)))
	}
	return strings.Join(parts, ".")
}

func firstKeyOffset(e *unstable.Node) int {
	it := e.Key()
	it.Next()
	return int(it.Node().Raw.Offset)
}

func (d *document) line(off int) int { return d.lines.Line(off) }

func (d *document) lineStart(off int) int { return bytes.LastIndexByte(d.data[:off], '\n') + 1 }

// lineEnd returns the offset just past the end of the line holding off,
// its line ending included.
func (d *document) lineEnd(off int) int {
	if i := bytes.IndexByte(d.data[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(d.data)
}

// lookup returns the value at a path of keys in the decoded tree.
func (d *document) lookup(keys ...string) (any, bool) { return tomltext.Lookup(d.tree, keys...) }

// blockMarkers returns the comment lines that open and close the engine's
// managed block in a file it edits in place.
func blockMarkers(name string) (begin, end string) {
	return "# " + name + ": begin managed block; removed by uninstall, do not edit",
		"# " + name + ": end managed block"
}
