package artifacts

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/kata-deploy/kata-deploy/internal/tomltext"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// Kata reads drop-ins from the config.d directory beside the configuration
// file it was given, in lexical order, each merged over the last (a value
// replaces, it is not appended to). The config.d beside the shared
// share/defaults/kata-containers would apply to every shim, and a table such
// as [hypervisor.qemu] merged into a Cloud Hypervisor configuration would
// give it two hypervisors. So, as upstream kata-deploy does, each shim gets
// its own directory, runtimes/<shim>/, holding a symlink to its
// configuration and its own config.d. The container runtime is pointed at
// runtimes/<shim>/configuration-<shim>.toml (Report.Shims), which stays the
// same whether settings are set or not, so changing settings never needs a
// container runtime reconfiguration.
const (
	dropInDir    = "config.d"
	dropInHeader = "# Written by kata-deploy; removed when it uninstalls Kata. Do not edit.\n"
)

// Drop-in file names: the number orders them, later ones win.
const (
	dropInPrefix      = "10-installation-prefix.toml"
	dropInDebug       = "20-debug.toml"
	dropInKernel      = "30-kernel-params.toml"
	dropInAnnotations = "40-hypervisor-annotations.toml"
)

// defaultDest is where Kata's own files say Kata is: the default
// installation's tree, /opt/kata.
func defaultDest() string { return runtime.Installation{}.Dest() }

// isConfigDir tells the directories of a payload where Kata puts its shims'
// configurations (the Go runtime's and runtime-rs's).
func isConfigDir(dir string) bool {
	return dir == runtime.Shim{}.ConfigDir() || dir == runtime.Shim{RuntimeRS: true}.ConfigDir()
}

// shimOf describes the shim whose configuration the payload has at cfg, a
// path in its tree: a shim kata-deploy's catalogue may not know yet, laid
// out as runtime.Installation lays out every shim.
func shimOf(name, cfg string) runtime.Shim {
	return runtime.Shim{Name: name, RuntimeRS: path.Dir(cfg) == runtime.Shim{RuntimeRS: true}.ConfigDir(), ConfigFile: path.Base(cfg)}
}

var shimConfig = regexp.MustCompile(`^configuration-(.+)\.toml$`)

// shimConfigs returns the shim configurations among nodes: shim -> path of
// its configuration relative to the tree.
func shimConfigs(nodes []*node) map[string]string {
	out := map[string]string{}
	for _, n := range nodes {
		if n.typ != TypeFile {
			continue
		}
		dir, base := path.Split(n.path)
		if !isConfigDir(strings.TrimSuffix(dir, "/")) {
			continue
		}
		if m := shimConfig.FindStringSubmatch(base); m != nil {
			out[m[1]] = n.path
		}
	}
	return out
}

// generate returns the entries kata-deploy adds to a kata-static tree: per
// shim directories, configuration symlinks and drop-ins, and the shim ->
// configuration map. read returns a shim configuration's content.
func generate(layout Layout, nodes []*node, dest string, s Settings, read func(rel string) ([]byte, error)) ([]*node, map[string]string, error) {
	configs := shimConfigs(nodes)
	if layout != LayoutStatic {
		if s.Debug || len(s.Annotations) > 0 || s.AgentHTTPSProxy != "" || s.AgentNoProxy != "" || len(s.KernelParams) > 0 {
			return nil, nil, ErrUnsupportedSetting
		}
		return nil, nil, nil
	}
	for shim := range s.Annotations {
		if _, ok := configs[shim]; !ok {
			return nil, nil, fmt.Errorf("hypervisor annotations for shim %q: the payload has no configuration-%s.toml", shim, shim)
		}
	}
	existing := map[string]bool{}
	for _, n := range nodes {
		existing[n.path] = true
	}
	var out []*node
	addDir := func(p string) {
		if !existing[p] {
			existing[p] = true
			out = append(out, &node{path: p, typ: TypeDir, mode: 0o755, gen: true})
		}
	}
	shims := map[string]string{}
	for _, shim := range slices.Sorted(maps.Keys(configs)) {
		cfg := configs[shim]
		link := shimOf(shim, cfg).ConfigPath()
		shimDir := path.Dir(link)
		addDir(path.Dir(shimDir))
		addDir(shimDir)
		target, err := filepath.Rel(shimDir, cfg)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, &node{path: link, typ: TypeSymlink, mode: 0o777, target: target, gen: true})
		existing[link] = true
		shims[shim] = link

		data, err := read(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", cfg, err)
		}
		dropIns, err := dropInsFor(shim, cfg, data, dest, s)
		if err != nil {
			return nil, nil, err
		}
		if len(dropIns) == 0 {
			continue
		}
		confD := path.Join(shimDir, dropInDir)
		addDir(confD)
		for _, name := range slices.Sorted(maps.Keys(dropIns)) {
			content := dropIns[name]
			out = append(out, &node{
				path: path.Join(confD, name), typ: TypeFile, mode: 0o644,
				size: int64(len(content)), data: content, digest: digestOf(content), gen: true,
			})
		}
	}
	return out, shims, nil
}

// dropInsFor returns the drop-ins for one shim, by file name.
func dropInsFor(shim, cfgPath string, cfg []byte, dest string, s Settings) (map[string][]byte, error) {
	var doc map[string]any
	if err := toml.Unmarshal(cfg, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", cfgPath, err)
	}
	hv, hvTable, err := hypervisorOf(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	hvPath := []string{"hypervisor", hv}
	out := map[string][]byte{}

	if dest != defaultDest() {
		// The payload's configurations name /opt/kata; a prefix or suffix
		// moves the files, so every such path is moved with them.
		var t tomlDoc
		rebase(doc, nil, dest, &t)
		if len(t.tables) > 0 {
			out[dropInPrefix] = t.bytes()
		}
	}
	if s.Debug {
		var t tomlDoc
		t.set(hvPath, "enable_debug", true)
		t.set([]string{"runtime"}, "enable_debug", true)
		t.set([]string{"agent", "kata"}, "enable_debug", true)
		t.set([]string{"agent", "kata"}, "debug_console_enabled", true)
		out[dropInDebug] = t.bytes()
	}
	var params []string
	if s.AgentHTTPSProxy != "" {
		params = append(params, "agent.https_proxy="+s.AgentHTTPSProxy)
	}
	if s.AgentNoProxy != "" {
		params = append(params, "agent.no_proxy="+s.AgentNoProxy)
	}
	if s.Debug {
		params = append(params, "agent.log=debug", "initcall_debug")
	}
	params = append(params, s.KernelParams...)
	if len(params) > 0 {
		// A drop-in's kernel_params replaces the base one: keep it first.
		base, _ := hvTable["kernel_params"].(string)
		all := strings.Fields(base)
		all = append(all, params...)
		var t tomlDoc
		t.set(hvPath, "kernel_params", strings.Join(all, " "))
		out[dropInKernel] = t.bytes()
	}
	if extra := s.Annotations[shim]; len(extra) > 0 {
		// Likewise enable_annotations replaces: the base list comes first.
		var all []string
		if base, ok := hvTable["enable_annotations"].([]any); ok {
			for _, v := range base {
				if s, ok := v.(string); ok {
					all = append(all, s)
				}
			}
		}
		for _, a := range extra {
			if !slices.Contains(all, a) {
				all = append(all, a)
			}
		}
		var t tomlDoc
		t.set(hvPath, "enable_annotations", all)
		out[dropInAnnotations] = t.bytes()
	}
	return out, nil
}

// hypervisorOf returns the name and table of the configuration's one
// hypervisor ([hypervisor.<name>]).
func hypervisorOf(doc map[string]any) (string, map[string]any, error) {
	hvs, _ := doc["hypervisor"].(map[string]any)
	if len(hvs) != 1 {
		return "", nil, fmt.Errorf("want exactly one [hypervisor.<name>] table, found %d", len(hvs))
	}
	for name, t := range hvs {
		table, _ := t.(map[string]any)
		return name, table, nil
	}
	panic("unreachable")
}

// rebase collects every string, or list of strings, under /opt/kata in doc
// and records it moved under dest.
func rebase(doc map[string]any, at []string, dest string, t *tomlDoc) {
	move := func(s string) (string, bool) {
		if s == defaultDest() || strings.HasPrefix(s, defaultDest()+"/") {
			return dest + strings.TrimPrefix(s, defaultDest()), true
		}
		return s, false
	}
	for _, k := range slices.Sorted(maps.Keys(doc)) {
		switch v := doc[k].(type) {
		case map[string]any:
			rebase(v, append(slices.Clone(at), k), dest, t)
		case string:
			if moved, ok := move(v); ok {
				t.set(at, k, moved)
			}
		case []any:
			var list []string
			changed := false
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					list = nil
					break
				}
				moved, ok := move(s)
				changed = changed || ok
				list = append(list, moved)
			}
			if changed && list != nil {
				t.set(at, k, list)
			}
		}
	}
}

// tomlDoc writes small TOML documents deterministically: tables in the
// order first set, keys in the order set.
type tomlDoc struct {
	tables []*tomlTable
}

type tomlTable struct {
	path []string
	keys []string
	vals []string
}

func (d *tomlDoc) set(table []string, key string, value any) {
	var t *tomlTable
	for _, x := range d.tables {
		if slices.Equal(x.path, table) {
			t = x
		}
	}
	if t == nil {
		t = &tomlTable{path: slices.Clone(table)}
		d.tables = append(d.tables, t)
	}
	t.keys = append(t.keys, tomltext.Key(key))
	t.vals = append(t.vals, tomlValue(value))
}

func (d *tomlDoc) bytes() []byte {
	var b strings.Builder
	b.WriteString(dropInHeader)
	for _, t := range d.tables {
		fmt.Fprintf(&b, "\n[%s]\n", tomltext.DottedKey(t.path...))
		for i, k := range t.keys {
			fmt.Fprintf(&b, "%s = %s\n", k, t.vals[i])
		}
	}
	return []byte(b.String())
}

func tomlValue(v any) string {
	switch v := v.(type) {
	case bool:
		return strconv.FormatBool(v)
	case string:
		return tomltext.String(v)
	case []string:
		return tomltext.StringArray(v)
	}
	panic(fmt.Sprintf("tomlValue: unsupported %T", v))
}
