package katadeploy_test

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// A repository file named in prose: an optional relative path, a name,
	// and an extension of the kinds this repository holds.
	fileRef = regexp.MustCompile(`(?:\.\.?/)*(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:go|md|sh|yaml|golden)\b`)
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	url     = regexp.MustCompile(`[a-z]+://\S+`)
)

// TestReferencesExist fails when a comment, a manifest or a doc names a
// repository file that does not exist (a renamed test, a link out of the
// repository): a reader following it finds nothing.
func TestReferencesExist(t *testing.T) {
	files := map[string]bool{} // slash paths relative to the repository
	names := map[string]bool{} // base names
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		files[filepath.ToSlash(p)] = true
		names[d.Name()] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	top := map[string]bool{}
	for f := range files {
		top[strings.SplitN(f, "/", 2)[0]] = true
	}
	for f := range files {
		if strings.Contains("/"+f, "/testdata/") && path.Ext(f) != ".md" {
			continue // inputs and expected outputs, not prose
		}
		text := prose(t, f)
		if text == "" {
			continue
		}
		dir := path.Dir(f)
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p := path.Join(dir, target)
			if strings.HasPrefix(p, "../") || !files[p] {
				t.Errorf("%s links to %s, which is not a file of this repository", f, m[1])
			}
		}
		text = url.ReplaceAllString(text, " ")
		for _, loc := range fileRef.FindAllStringIndex(text, -1) {
			ref := text[loc[0]:loc[1]]
			if loc[0] > 0 && strings.ContainsAny(text[loc[0]-1:loc[0]], "/.$*{-_") {
				continue // part of a host path, a glob or a variable
			}
			if loc[1] < len(text) && text[loc[1]] == '/' {
				continue // a domain, as in the helm.sh/hook annotation
			}
			if !strings.Contains(ref, "/") {
				if !names[ref] {
					t.Errorf("%s names %s, which no file of this repository is called", f, ref)
				}
				continue
			}
			rel := path.Join(dir, ref)
			if strings.HasPrefix(ref, ".") {
				if strings.HasPrefix(rel, "../") || !files[rel] {
					t.Errorf("%s names %s, which is not a file of this repository", f, ref)
				}
				continue
			}
			if !top[strings.SplitN(ref, "/", 2)[0]] {
				continue // another project's file
			}
			if !files[ref] && !files[rel] {
				t.Errorf("%s names %s, which does not exist", f, ref)
			}
		}
	}
}

// prose returns the parts of a file a reader follows: all of a document,
// manifest or script, and the comments of Go source.
func prose(t *testing.T, f string) string {
	ext := path.Ext(f)
	base := path.Base(f)
	switch {
	case ext == ".md", ext == ".yaml", ext == ".sh", base == "Makefile", base == "Dockerfile":
	case ext == ".go":
	default:
		return ""
	}
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if ext != ".go" {
		return string(data)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if _, c, ok := strings.Cut(line, "// "); ok {
			b.WriteString(c)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// TestSharedTestdataListed keeps testdata/README.md's tables true: every
// shared config is listed with where it comes from, and every listed file
// exists.
func TestSharedTestdataListed(t *testing.T) {
	readme, err := os.ReadFile("testdata/README.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	section := ""
	for _, line := range strings.Split(string(readme), "\n") {
		if name, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.TrimSuffix(name, "/")
			continue
		}
		if name, ok := strings.CutPrefix(line, "| `"); ok {
			name, _, _ = strings.Cut(name, "`")
			listed[section+"/"+name] = true
		}
	}
	files, err := filepath.Glob("testdata/*/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f = strings.TrimPrefix(filepath.ToSlash(f), "testdata/")
		if !listed[f] {
			t.Errorf("testdata/%s is not listed in testdata/README.md", f)
		}
		delete(listed, f)
	}
	for f := range listed {
		t.Errorf("testdata/README.md lists %s, which is not in testdata/", f)
	}
}
