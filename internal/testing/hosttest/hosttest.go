// Package hosttest builds and reads host trees for the config engines'
// tests: a directory standing in for a node's root.
package hosttest

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Write creates a host tree under a new temporary directory: dirs, then
// files (host path -> content), and returns its root.
func Write(t testing.TB, dirs []string, files map[string][]byte) string {
	t.Helper()
	host := t.TempDir()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(host, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range files {
		full := filepath.Join(host, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return host
}

// Snapshot reads every file and directory under dir: relative path ->
// content, with directories as "path/" -> "" and symlinks (not followed)
// as "path" -> "-> target".
func Snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			out[rel] = "-> " + target
			return err
		}
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		data, err := os.ReadFile(p)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
