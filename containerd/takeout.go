package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/kata-deploy/kata-deploy/internal/journal"
	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// takeOut removes the engine's own edit from a file someone else changed
// since: its entry in imports, or the runtime tables of its managed block.
//
// The block comes out whole when its markers are intact; lines someone
// added inside it go with it, and the journal keeps a copy of the file.
// Without its markers, the tables the engine wrote are taken out by key,
// but only when they are exactly as written; anything else is refused, so
// that an uninstall never leaves half of Kata's tables behind nor drops a
// setting of the user's without saying so.
func (e *Engine) takeOut(ctx context.Context, p string, current []byte, f *journal.File) (*journal.Surgery, error) {
	doc, err := parseDocument(ctx, p, current, e.name)
	if err != nil {
		return nil, err
	}
	if doc.imports != nil {
		for _, im := range doc.imports.elems {
			if path.Base(im.value) == e.dropInName() {
				// The last entry of a list the file did not have before
				// kata-deploy edited it: the list was kata-deploy's line,
				// and goes whole, as restoring the former bytes would.
				if len(doc.imports.elems) == 1 {
					if prev, err := parseDocument(ctx, p, f.Before, e.name); err == nil && prev.imports == nil {
						return &journal.Surgery{After: splice(doc.data, doc.imports.start, doc.lineEnd(doc.imports.close), "")}, nil
					}
				}
				return &journal.Surgery{After: removeImport(doc, im)}, nil
			}
		}
	}
	begin, end := blockMarkers(e.name)
	inserted := f.Inserted
	if !bytes.HasPrefix(inserted, []byte(begin)) {
		// An import edit (its entry is gone already), or a journal from
		// before kata-deploy recorded what it inserted.
		if doc.block != nil {
			return &journal.Surgery{After: removeBlock(doc),
				Dropped: "kata-deploy's managed block is taken out whole, and this journal does not record what kata-deploy wrote in it"}, nil
		}
		if hasLine(current, begin) || hasLine(current, end) {
			return nil, fmt.Errorf("a marker of kata-deploy's managed block was removed by hand, and this journal does not record which tables kata-deploy wrote; put the marker back (%q or %q) around kata-deploy's tables, or take them out by hand, then run uninstall again", begin, end)
		}
		return &journal.Surgery{After: current}, nil
	}
	if doc.block != nil {
		after := removeBlock(doc)
		if err := sameExceptRemoved(ctx, doc, after, [][2]int{{doc.block.start, doc.block.end}}); err != nil {
			return nil, err
		}
		if bytes.Equal(current[doc.block.start:doc.block.end], inserted) {
			return &journal.Surgery{After: after}, nil
		}
		return &journal.Surgery{After: after, Dropped: "someone changed lines inside kata-deploy's managed block"}, nil
	}
	return e.takeOutTables(ctx, doc, inserted, begin, end)
}

// takeOutTables removes, from a file whose block markers are gone, the
// tables in inserted, when they are as written, and what is left of the
// markers.
func (e *Engine) takeOutTables(ctx context.Context, doc *document, inserted []byte, begin, end string) (*journal.Surgery, error) {
	want, err := tomltext.Decode(ctx, inserted)
	if err != nil {
		return nil, fmt.Errorf("the journal's record of kata-deploy's block does not parse: %w", err)
	}
	ours := tableKeys(inserted)
	var cut [][2]int
	var found []string
	inOurs := false
	var p unstable.Parser
	p.KeepComments = true
	p.Reset(doc.data)
	for p.NextExpression() {
		x := p.Expression()
		from, to := doc.lineStart(int(x.Raw.Offset)), doc.lineEnd(int(x.Raw.Offset+x.Raw.Length))
		switch x.Kind {
		case unstable.Comment:
			if t := strings.TrimSpace(string(x.Data)); t == begin || t == end {
				cut = append(cut, [2]int{from, to})
			}
		case unstable.Table, unstable.ArrayTable:
			k := keyOf(x)
			inOurs = x.Kind == unstable.Table && slices.Contains(ours, k)
			if inOurs {
				// A header's own range is empty: its key parts say where
				// it is.
				from, to = doc.lineStart(firstKeyOffset(x)), doc.lineEnd(lastKeyOffset(x))
				cut = append(cut, [2]int{from, to})
				found = append(found, k)
			}
		case unstable.KeyValue:
			if inOurs {
				cut = append(cut, [2]int{from, to})
			}
		}
	}
	if err := p.Error(); err != nil {
		return nil, &runtime.ConfigError{Path: doc.path, Err: errors.New("internal error: malformed TOML")}
	}
	if len(found) == 0 {
		return &journal.Surgery{After: spliceOut(doc.data, mergeCuts(doc.data, cut))}, nil
	}
	for _, k := range found {
		parts := splitKey(k)
		got, _ := doc.lookup(parts...)
		exp, _ := tomltext.Lookup(want, parts...)
		if !reflect.DeepEqual(got, exp) {
			return nil, fmt.Errorf("the markers of kata-deploy's managed block were removed and its table [%s] was changed since, so kata-deploy cannot tell its own settings apart; put the markers back around kata-deploy's tables (%q ... %q), or take them out by hand, then run uninstall again", k, begin, end)
		}
	}
	cut = mergeCuts(doc.data, cut)
	after := spliceOut(doc.data, cut)
	if err := sameExceptRemoved(ctx, doc, after, cut); err != nil {
		return nil, err
	}
	return &journal.Surgery{After: after}, nil
}

// sameExceptRemoved checks that after, doc's bytes without the spans cut,
// means what doc means without the tables and keys those spans define:
// taking our edit out must never move or drop anything else.
func sameExceptRemoved(ctx context.Context, doc *document, after []byte, cut [][2]int) error {
	got, err := tomltext.Decode(ctx, after)
	if err != nil {
		return fmt.Errorf("taking out kata-deploy's edit would leave a file that does not parse (%w); take kata-deploy's tables out by hand, then run uninstall again", err)
	}
	expect := cloneTree(doc.tree)
	var p unstable.Parser
	p.Reset(doc.data)
	var table []string
	inCut := func(off int) bool {
		for _, c := range cut {
			if off >= c[0] && off < c[1] {
				return true
			}
		}
		return false
	}
	for p.NextExpression() {
		x := p.Expression()
		switch x.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = splitKey(keyOf(x))
			if inCut(firstKeyOffset(x)) {
				deleteKey(expect, table)
			}
		case unstable.KeyValue:
			if inCut(int(x.Raw.Offset)) {
				deleteKey(expect, append(slices.Clone(table), splitKey(keyOf(x))...))
			}
		}
	}
	pruneEmpty(expect)
	pruneEmpty(got)
	if !reflect.DeepEqual(expect, got) {
		return errors.New("taking out kata-deploy's edit would change other settings too (a table or key of someone else's follows kata-deploy's tables without a header of its own); take kata-deploy's tables out by hand, then run uninstall again")
	}
	return nil
}

func lastKeyOffset(e *unstable.Node) int {
	off := 0
	it := e.Key()
	for it.Next() {
		off = int(it.Node().Raw.Offset)
	}
	return off
}

// tableKeys lists the table headers of a rendered block.
func tableKeys(block []byte) []string {
	var out []string
	var p unstable.Parser
	p.Reset(block)
	for p.NextExpression() {
		if x := p.Expression(); x.Kind == unstable.Table {
			out = append(out, keyOf(x))
		}
	}
	return out
}

// splitKey splits a key as keyOf writes it back into its parts.
func splitKey(k string) []string {
	var p unstable.Parser
	p.Reset([]byte(k + " = 0"))
	if !p.NextExpression() {
		return []string{k}
	}
	var parts []string
	it := p.Expression().Key()
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func deleteKey(tree map[string]any, keys []string) {
	if len(keys) == 0 {
		return
	}
	parent, ok := tomltext.Lookup(tree, keys[:len(keys)-1]...)
	if m, isMap := parent.(map[string]any); ok && isMap {
		delete(m, keys[len(keys)-1])
	}
}

// pruneEmpty drops tables left empty: an empty table means nothing to
// containerd, and one that only held kata-deploy's tables goes with them.
func pruneEmpty(m map[string]any) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			pruneEmpty(sub)
			if len(sub) == 0 {
				delete(m, k)
			}
		}
	}
}

// mergeCuts sorts the spans and joins those that only blank lines
// separate, taking the blank line before the first one too when it
// follows other content, as appendBlock added it.
func mergeCuts(data []byte, cut [][2]int) [][2]int {
	if len(cut) == 0 {
		return nil
	}
	slices.SortFunc(cut, func(a, b [2]int) int { return a[0] - b[0] })
	out := [][2]int{cut[0]}
	for _, c := range cut[1:] {
		last := &out[len(out)-1]
		if len(bytes.TrimSpace(data[last[1]:c[0]])) == 0 {
			last[1] = max(last[1], c[1])
			continue
		}
		out = append(out, c)
	}
	first := &out[0]
	for _, sep := range []string{"\r\n", "\n"} {
		n := len(sep)
		if first[0] >= 2*n && string(data[first[0]-n:first[0]]) == sep && string(data[first[0]-2*n:first[0]-n]) == sep {
			first[0] -= n
			break
		}
	}
	return out
}

func spliceOut(data []byte, cut [][2]int) []byte {
	var out []byte
	prev := 0
	for _, c := range cut {
		out = append(out, data[prev:c[0]]...)
		prev = c[1]
	}
	return append(out, data[prev:]...)
}

func hasLine(data []byte, line string) bool {
	for l := range bytes.Lines(data) {
		if string(bytes.TrimSpace(l)) == line {
			return true
		}
	}
	return false
}
