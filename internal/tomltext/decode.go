package tomltext

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// MaxConfigSize is the largest config file the engines read. Real runtime
// configs are a few KB; a bigger file is a mistake or an attack. Planning
// a 16 MB config peaked at 360-690 MB RSS (decode, edit check, diff), over
// the DaemonSet's 256 MiB limit; 4 MiB keeps a plan well inside it.
const MaxConfigSize = 4 << 20

// Error is a TOML document that does not decode. It names the line and
// key at fault and quotes at most a short, escaped excerpt of the file:
// the file may be anything a symlink points to, so its content is never
// echoed whole.
type Error struct {
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key; "" when not about one key
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString("key " + e.ShortKey() + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ShortKey returns the key at fault as it may be printed: quoted as an
// excerpt when long or not printable.
func (e *Error) ShortKey() string {
	k := e.Key
	if len(k) > ExcerptLen || strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
		k = Excerpt([]byte(k))
	}
	return k
}

// Parts returns what a *runtime.ConfigError names: the line, the key as
// it may be printed, and the message without either.
func (e *Error) Parts() (line int, key string, msg error) {
	k := ""
	if e.Key != "" {
		k = e.ShortKey()
	}
	return e.Line, k, errors.New(e.Msg)
}

// Decode parses a TOML document into the tree go-toml's Unmarshal into a
// map[string]any gives (same value types, same rules on redefinition),
// in time linear in the document's size: go-toml tracks the keys it has
// seen in a list it scans for every key, so a table with many keys costs
// it quadratic time. Decode stops when ctx ends.
func Decode(ctx context.Context, data []byte) (map[string]any, error) {
	d := &decoder{data: data, lines: NewLines(data)}
	root := &node{kind: kindTable, explicit: true, m: map[string]any{}, kids: map[string]*node{}}
	current := root
	var p unstable.Parser
	p.Reset(data)
	for n := 0; p.NextExpression(); n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		e := p.Expression()
		var err error
		switch e.Kind {
		case unstable.KeyValue:
			err = d.keyValue(current, e)
		case unstable.Table:
			current, err = d.table(root, e)
		case unstable.ArrayTable:
			current, err = d.arrayTable(root, e)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := p.Error(); err != nil {
		return nil, d.parserError(err)
	}
	return root.m, nil
}

// kind is what a key names, as go-toml's tracker tells them apart.
type kind uint8

const (
	kindValue      kind = iota + 1 // a value: cannot be extended
	kindDotted                     // a table made by a dotted key
	kindTable                      // a table made by a [header] (explicit) or on the way to one
	kindArrayTable                 // an array of tables; m and kids are its last element's
)

func (k kind) String() string {
	switch k {
	case kindValue:
		return "value"
	case kindDotted:
		return "table defined by a dotted key"
	case kindTable:
		return "table"
	}
	return "array of tables"
}

// node is one key seen: its kind, and for tables the map being filled and
// the keys seen in it. Maps make every lookup constant time.
type node struct {
	kind     kind
	explicit bool
	m        map[string]any
	kids     map[string]*node
}

type decoder struct {
	data  []byte
	lines Lines
}

// Lookup returns the value at a path of keys in a tree Decode made.
func Lookup(tree map[string]any, keys ...string) (any, bool) {
	var cur any = tree
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func keyParts(e *unstable.Node) []string {
	var parts []string
	it := e.Key()
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func (d *decoder) errAt(e *unstable.Node, parts []string, format string, args ...any) error {
	return &Error{Line: d.lines.Line(exprOffset(e)), Key: DottedKey(parts...), Msg: fmt.Sprintf(format, args...)}
}

// child returns the table under parent that a header or a dotted key goes
// through, creating it as kind k when missing.
func child(parent *node, name string, k kind) *node {
	c := &node{kind: k, m: map[string]any{}, kids: map[string]*node{}}
	parent.kids[name] = c
	parent.m[name] = c.m
	return c
}

func (d *decoder) keyValue(current *node, e *unstable.Node) error {
	parts := keyParts(e)
	parent := current
	for i, name := range parts[:len(parts)-1] {
		c := parent.kids[name]
		switch {
		case c == nil:
			c = child(parent, name, kindDotted)
		case c.kind != kindDotted:
			return d.errAt(e, parts[:i+1], "is already defined as a %s", c.kind)
		}
		parent = c
	}
	name := parts[len(parts)-1]
	if _, ok := parent.kids[name]; ok {
		return d.errAt(e, parts, "is already defined")
	}
	v, err := d.value(e.Value())
	if err != nil {
		return err
	}
	parent.kids[name] = &node{kind: kindValue}
	parent.m[name] = v
	return nil
}

// path walks a header's key up to its last part.
func (d *decoder) path(root *node, e *unstable.Node, parts []string) (*node, error) {
	parent := root
	for i, name := range parts[:len(parts)-1] {
		c := parent.kids[name]
		switch {
		case c == nil:
			c = child(parent, name, kindTable)
		case c.kind == kindValue:
			return nil, d.errAt(e, parts[:i+1], "is already defined as a value")
		}
		parent = c
	}
	return parent, nil
}

func (d *decoder) table(root *node, e *unstable.Node) (*node, error) {
	parts := keyParts(e)
	parent, err := d.path(root, e, parts)
	if err != nil {
		return nil, err
	}
	name := parts[len(parts)-1]
	c := parent.kids[name]
	switch {
	case c == nil:
		c = child(parent, name, kindTable)
	case c.kind == kindTable && !c.explicit:
	default:
		return nil, d.errAt(e, parts, "is already defined as a %s", c.kind)
	}
	c.explicit = true
	return c, nil
}

func (d *decoder) arrayTable(root *node, e *unstable.Node) (*node, error) {
	parts := keyParts(e)
	parent, err := d.path(root, e, parts)
	if err != nil {
		return nil, err
	}
	name := parts[len(parts)-1]
	c := parent.kids[name]
	switch {
	case c == nil:
		c = &node{kind: kindArrayTable}
		parent.kids[name] = c
		parent.m[name] = []any{}
	case c.kind != kindArrayTable:
		return nil, d.errAt(e, parts, "is already defined as a %s", c.kind)
	}
	// Each [[header]] starts a new element whose keys are new.
	c.m, c.kids = map[string]any{}, map[string]*node{}
	parent.m[name] = append(parent.m[name].([]any), c.m)
	return c, nil
}

func (d *decoder) value(v *unstable.Node) (any, error) {
	switch v.Kind {
	case unstable.String:
		return string(v.Data), nil
	case unstable.Bool:
		return v.Data[0] == 't', nil
	case unstable.Integer:
		return d.integer(v)
	case unstable.Float:
		return d.float(v)
	case unstable.Array:
		out := []any{}
		it := v.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			x, err := d.value(c)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case unstable.InlineTable:
		t := &node{kind: kindValue, m: map[string]any{}, kids: map[string]*node{}}
		it := v.Children()
		for it.Next() {
			if err := d.keyValue(t, it.Node()); err != nil {
				return nil, err
			}
		}
		return t.m, nil
	case unstable.DateTime, unstable.LocalDateTime, unstable.LocalDate, unstable.LocalTime:
		// Rare in runtime configs: go-toml decodes the one value, so the
		// types are exactly its own.
		var one map[string]any
		if err := toml.Unmarshal(append([]byte("v = "), d.data[v.Raw.Offset:v.Raw.Offset+v.Raw.Length]...), &one); err != nil {
			return nil, d.valueError(v, "is not a valid date or time")
		}
		return one["v"], nil
	}
	return nil, d.valueError(v, "has an unsupported kind of value")
}

func (d *decoder) valueError(v *unstable.Node, msg string) error {
	return &Error{Line: d.lines.Line(int(v.Raw.Offset)), Msg: "value " + Excerpt(d.data[v.Raw.Offset:v.Raw.Offset+v.Raw.Length]) + " " + msg}
}

// integer decodes an integer the parser has checked the syntax of.
func (d *decoder) integer(v *unstable.Node) (int64, error) {
	s := strings.ReplaceAll(string(v.Data), "_", "")
	base := 10
	if len(s) > 2 && s[0] == '0' {
		switch s[1] {
		case 'x':
			base = 16
		case 'o':
			base = 8
		case 'b':
			base = 2
		}
		if base != 10 {
			s = s[2:]
		}
	}
	n, err := strconv.ParseInt(s, base, 64)
	if err != nil {
		return 0, d.valueError(v, "does not fit in a 64-bit integer")
	}
	return n, nil
}

func (d *decoder) float(v *unstable.Node) (float64, error) {
	s := strings.ReplaceAll(string(v.Data), "_", "")
	switch strings.TrimLeft(s, "+-") {
	case "inf":
		if s[0] == '-' {
			return math.Inf(-1), nil
		}
		return math.Inf(1), nil
	case "nan":
		return math.NaN(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, d.valueError(v, "is not a valid float")
	}
	return f, nil
}

func (d *decoder) parserError(err error) error {
	pe, ok := err.(*unstable.ParserError)
	if !ok {
		return &Error{Msg: "malformed TOML: " + Excerpt([]byte(err.Error()))}
	}
	line := 0
	// The highlight is a slice of the document when the parser found the
	// fault in it: its offset is what it lacks of the document's capacity.
	if off := cap(d.data) - cap(pe.Highlight); len(d.data) > 0 && off >= 0 && off <= len(d.data) {
		line = d.lines.Line(off)
	}
	msg := "malformed TOML: " + pe.Message
	if len(pe.Highlight) > 0 {
		msg += " at " + Excerpt(pe.Highlight)
	}
	return &Error{Line: line, Key: DottedKey(pe.Key...), Msg: msg}
}

// ExcerptLen is the most bytes of a file an error quotes.
const ExcerptLen = 40

// Excerpt quotes at most ExcerptLen bytes of b, escaped (no control or
// invalid bytes reach a terminal), marking what it cut: what an error may
// show of a file that could be anything, even the host's shadow file.
func Excerpt(b []byte) string {
	cut := len(b) > ExcerptLen
	if cut {
		b = b[:ExcerptLen]
		// Do not split a UTF-8 sequence into invalid bytes.
		for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.Valid(b); i++ {
			b = b[:len(b)-1]
		}
	}
	q := strconv.QuoteToASCII(string(b))
	if cut {
		q += "..."
	}
	return q
}

// Lines finds the line of an offset in a document by binary search after
// one pass over it: counting newlines from the start for each of many
// positions would make indexing a file quadratic.
type Lines []int

// NewLines indexes the line starts of data.
func NewLines(data []byte) Lines {
	var l Lines
	for off := 0; ; {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return l
		}
		off += i + 1
		l = append(l, off)
	}
}

// Line returns the 1-based line holding offset off.
func (l Lines) Line(off int) int {
	lo, hi := 0, len(l)
	for lo < hi {
		mid := (lo + hi) / 2
		if l[mid] <= off {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo + 1
}

// KeyLine returns the 1-based line of the first expression in data that
// defines the dotted key keys: a [table] or [[array]] header at or under
// it, or a key-value (dotted or not) whose table and key reach it. It
// returns 0 when none does or data does not parse up to it. Errors about a
// key found in a decoded tree use it to name file:line, as the decoder's
// own errors do.
func KeyLine(data []byte, keys ...string) int {
	if len(keys) == 0 {
		return 0
	}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		var full []string
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyParts(e)
			full = table
		case unstable.KeyValue:
			full = append(append([]string(nil), table...), keyParts(e)...)
		default:
			continue
		}
		if len(full) >= len(keys) && slices.Equal(full[:len(keys)], keys) {
			return NewLines(data).Line(exprOffset(e))
		}
	}
	return 0
}

// exprOffset is where an expression starts. The parser gives a header no
// Raw span, so a table is placed by its first key.
func exprOffset(e *unstable.Node) int {
	if e.Raw.Length == 0 {
		if it := e.Key(); it.Next() {
			return int(it.Node().Raw.Offset)
		}
	}
	return int(e.Raw.Offset)
}
