package containerd

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// checkEffective refuses to register a handler that a file containerd
// reads its config from already defines. Those are main and every file it
// imports, recursively, as containerd resolves them (a relative path
// against the importing file's directory, a glob as the matching files);
// own, the engine's drop-in, is left out, and so is the engine's own block
// in a file it edits in place. Where imports merge (containerd 2.1 and
// later) the engine's drop-in would silently replace such a runtime, and
// where they replace plugin tables one of the two would silently vanish:
// either way a runtime the user named must not be overridden without a
// word. Every file read is recorded among the plan's reads.
func (e *Engine) checkEffective(ctx context.Context, f *files, main *document, own string, spec runtime.Spec) error {
	docs, err := e.importClosure(ctx, f, main, own)
	if err != nil {
		return err
	}
	return e.checkDocs(ctx, docs, spec)
}

// checkDropInDir is checkEffective for k0s, which loads every *.toml file
// in its drop-in directory dir.
func (e *Engine) checkDropInDir(ctx context.Context, f *files, dir, own string, spec runtime.Spec) error {
	entries, err := f.reads.ReadDir(e.root, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var docs []*document
	for _, en := range entries {
		p := path.Join(dir, en.Name())
		if en.IsDir() || !strings.HasSuffix(en.Name(), ".toml") || e.same(p, own) {
			continue
		}
		doc, err := e.read(ctx, f, p)
		if err != nil {
			return err
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return e.checkDocs(ctx, docs, spec)
}

// importClosure returns main and every file it imports, recursively, each
// once, leaving out own.
func (e *Engine) importClosure(ctx context.Context, f *files, main *document, own string) ([]*document, error) {
	out := []*document{main}
	seen := map[string]bool{main.path: true}
	for i := 0; i < len(out); i++ {
		doc := out[i]
		if doc.imports == nil {
			continue
		}
		for _, im := range doc.imports.elems {
			p := im.value
			if !path.IsAbs(p) {
				p = path.Join(path.Dir(doc.path), p)
			}
			p = path.Clean(p)
			paths := []string{p}
			if dir, pattern := path.Split(p); hasMeta(pattern) {
				if hasMeta(dir) {
					continue // containerd does not read these either
				}
				entries, err := f.reads.ReadDir(e.root, dir)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return nil, err
				}
				paths = paths[:0]
				for _, en := range entries {
					if ok, _ := path.Match(pattern, en.Name()); ok && !en.IsDir() {
						paths = append(paths, path.Join(dir, en.Name()))
					}
				}
			}
			for _, p := range paths {
				if seen[p] || e.same(p, own) {
					continue
				}
				seen[p] = true
				d, err := e.read(ctx, f, p)
				if err != nil {
					return nil, err
				}
				if d != nil {
					out = append(out, d)
				}
			}
		}
	}
	return out, nil
}

// same reports whether the host paths p and own (own may be "") name the
// same file once symlinks are resolved.
func (e *Engine) same(p, own string) bool {
	if own == "" {
		return false
	}
	if p == own {
		return true
	}
	a, err1 := e.root.Resolve(p)
	b, err2 := e.root.Resolve(own)
	return err1 == nil && err2 == nil && a == b
}

// checkDocs refuses a handler spec registers that one of docs defines,
// under the runtimes table of any config version's CRI plugin: containerd
// 2.x migrates a version 2 file's tables, so either key is a runtime.
func (e *Engine) checkDocs(ctx context.Context, docs []*document, spec runtime.Spec) error {
	names := spec.HandlerNames()
	if spec.Mode == runtime.ModeUntrusted {
		names = append(names, untrustedRuntime)
	}
	var plugins []string
	for _, cv := range configVersions() {
		if !slices.Contains(plugins, cv.criPlugin) {
			plugins = append(plugins, cv.criPlugin)
		}
	}
	for _, doc := range docs {
		if doc.block != nil {
			// The engine's own block, from an earlier install, is not
			// someone else's runtime.
			var err error
			if doc, err = parseDocument(ctx, doc.path, removeBlock(doc), e.name); err != nil {
				return err
			}
		}
		for _, plugin := range plugins {
			keys := []string{"plugins", plugin, "containerd", "runtimes"}
			v, _ := doc.lookup(keys...)
			runtimes, _ := v.(map[string]any)
			for _, n := range names {
				if _, ok := runtimes[n]; ok {
					return &runtime.ConfigError{Path: doc.path, Line: tomltext.KeyLine(doc.data, append(keys, n)...), Key: tomltext.DottedKey(append(keys, n)...),
						Err: errors.New("is already defined; kata-deploy will not override a runtime it did not write, and containerd reads this file with its config (remove it, or install with another name suffix)")}
				}
			}
		}
	}
	return nil
}
