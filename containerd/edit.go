package containerd

import (
	"context"
	"fmt"
	"maps"
	"reflect"

	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
)

// addImport returns main's bytes with p added to its imports list: one
// new element, or one new line if there is no list. Nothing else changes.
//
// The element goes first: containerd stops reading imports at the first
// file that does not exist, without an error, so an entry after a stale
// one would never be loaded.
func addImport(ctx context.Context, main *document, p string) ([]byte, error) {
	var at int
	var insert string
	switch a := main.imports; {
	case a != nil:
		for _, im := range a.elems {
			if im.value == p {
				return main.data, nil
			}
		}
		if len(a.elems) > 0 {
			at, insert = a.elems[0].start, tomltext.String(p)+", "
		} else {
			at, insert = a.close, tomltext.String(p)
		}
	default:
		at = main.firstTable
		if main.afterVersion >= 0 {
			at = main.afterVersion
		}
		insert = "imports = [" + tomltext.String(p) + "]" + main.eol
		if at == len(main.data) && at > 0 && main.data[at-1] != '\n' {
			insert = main.eol + insert
		}
	}
	after := splice(main.data, at, at, insert)
	if err := verify(ctx, main, after, func(tree map[string]any) {
		imports, _ := tree["imports"].([]any)
		tree["imports"] = append([]any{p}, imports...)
	}); err != nil {
		return nil, err
	}
	return after, nil
}

// removeImport returns doc's bytes without the import im, for uninstall
// from a file someone edited after kata-deploy did.
func removeImport(doc *document, im importElem) []byte {
	elems := doc.imports.elems
	i := 0
	for i < len(elems) && elems[i] != im {
		i++
	}
	switch {
	case i > 0:
		return splice(doc.data, elems[i-1].end, im.end, "")
	case len(elems) > 1:
		return splice(doc.data, im.start, elems[1].start, "")
	}
	return splice(doc.data, im.start, im.end, "")
}

// appendBlock returns base's bytes with block appended between the
// engine's markers, after checking that the only effect is the block's own
// tables.
func appendBlock(ctx context.Context, base *document, block, name string) ([]byte, error) {
	begin, end := blockMarkers(name)
	data := base.data
	var b []byte
	b = append(b, data...)
	if len(b) > 0 {
		if b[len(b)-1] != '\n' {
			b = append(b, base.eol...)
		}
		b = append(b, base.eol...)
	}
	b = append(b, begin+base.eol...)
	b = append(b, block...)
	b = append(b, end+base.eol...)

	var added map[string]any
	if err := toml.Unmarshal([]byte(block), &added); err != nil {
		return nil, fmt.Errorf("internal error: rendered runtime tables do not parse: %w", err)
	}
	if err := verify(ctx, base, b, func(tree map[string]any) { mergeTree(tree, added) }); err != nil {
		return nil, err
	}
	return b, nil
}

// removeBlock returns doc's bytes without the engine's managed block and
// the blank line appendBlock put before it.
func removeBlock(doc *document) []byte {
	start := doc.block.start
	for _, sep := range []string{"\r\n", "\n"} {
		n := len(sep)
		if start >= 2*n && string(doc.data[start-n:start]) == sep && string(doc.data[start-2*n:start-n]) == sep {
			start -= n
			break
		}
	}
	return splice(doc.data, start, doc.block.end, "")
}

// verify parses an edited file and checks that it means exactly what the
// original meant with expect applied, so that an edit can never change a
// setting it was not meant to.
func verify(ctx context.Context, orig *document, after []byte, expect func(map[string]any)) error {
	got, err := tomltext.Decode(ctx, after)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return &runtime.ConfigError{Path: orig.path, Err: fmt.Errorf("cannot add the Kata runtimes to this file: %w", err)}
	}
	want := cloneTree(orig.tree)
	expect(want)
	if reflect.DeepEqual(want, got) {
		return nil
	}
	if d := cmp.Diff(want, got); d != "" {
		return &runtime.ConfigError{Path: orig.path, Err: fmt.Errorf("internal error: the edit would change more than the Kata runtimes (-want +got):\n%s", d)}
	}
	return nil
}

func splice(data []byte, from, to int, insert string) []byte {
	out := make([]byte, 0, len(data)-(to-from)+len(insert))
	out = append(out, data[:from]...)
	out = append(out, insert...)
	return append(out, data[to:]...)
}

// mergeTree adds src's keys into dst, table by table.
func mergeTree(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeTree(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func cloneTree(m map[string]any) map[string]any {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range out {
		if sub, ok := v.(map[string]any); ok {
			out[k] = cloneTree(sub)
		}
	}
	return out
}

// renderRestated writes a drop-in for a containerd that lets an imported
// plugin table replace the main one: each plugin table the handlers touch
// is copied whole from main, with the handlers added.
func renderRestated(ctx context.Context, main *document, entries []entry, name string) ([]byte, error) {
	var added map[string]any
	if err := toml.Unmarshal([]byte(renderTables(main.version, entries, "\n")), &added); err != nil {
		return nil, fmt.Errorf("internal error: rendered runtime tables do not parse: %w", err)
	}
	plugins := map[string]any{}
	for id, table := range added["plugins"].(map[string]any) {
		orig, _ := main.lookup("plugins", id)
		copied, _ := orig.(map[string]any)
		copied = cloneTree(copied)
		mergeTree(copied, table.(map[string]any))
		plugins[id] = copied
	}
	body, err := toml.Marshal(map[string]any{"version": main.version, "plugins": plugins})
	if err != nil {
		return nil, fmt.Errorf("render drop-in: %w", err)
	}
	header := dropInHeader(name) + "# This containerd lets an imported plugin table replace the main one, so the\n" +
		"# tables below restate " + main.path + "'s as it was when written.\n"
	return append([]byte(header), body...), nil
}
