package installer

import (
	"context"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"github.com/kata-deploy/kata-deploy/internal/noderecord"
	"github.com/kata-deploy/kata-deploy/runtime"
)

// installation is the install this Config names: where its tree is and
// what its handlers and engine are called.
func (c *Config) installation() runtime.Installation {
	return runtime.Installation{Prefix: c.Prefix, Suffix: c.Suffix}
}

// prefix is the install prefix as the record and status state it.
func (c *Config) prefix() string { return path.Dir(c.dest()) }

// dest is the host path of the Kata tree.
func (c *Config) dest() string { return c.installation().Dest() }

// loadRecord reads the node's record of the install this Config names
// (by its suffix).
func (c *Config) loadRecord(root *hostfs.Root) (*noderecord.Record, error) {
	return noderecord.Load(root, c.Suffix)
}

// checkRecord refuses an install that would strand an earlier one: the
// same install (suffix) under another prefix, or on another runtime.
func (c *Config) checkRecord(t *target, prev *noderecord.Record) error {
	if prev == nil || prev.State == noderecord.Uninstalled {
		return nil
	}
	where := noderecord.PathFor(c.Suffix)
	if prev.Dest != c.dest() {
		//lint:ignore ST1005 "Kata" is a proper noun (the project's name), not a capitalised word.
		return fmt.Errorf("Kata is already installed in %s (recorded in %s), not %s: uninstall it first (the uninstall finds it by itself), or install beside it with --suffix", prev.Dest, where, c.dest())
	}
	if prev.Runtime.Variant != string(t.variant) || prev.Runtime.Config != c.RuntimeConfig {
		//lint:ignore ST1005 "Kata" is a proper noun (the project's name), not a capitalised word.
		return fmt.Errorf("Kata is already registered with %s %s (recorded in %s): uninstall it first (the uninstall finds it by itself)", prev.Runtime.Variant, orDefault(prev.Runtime.Config, "config"), where)
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// newRecord describes the install of t as this Config makes it.
func (c *Config) newRecord(t *target, prev *noderecord.Record) *noderecord.Record {
	r := &noderecord.Record{
		State: noderecord.Installing,
		Runtime: noderecord.Runtime{
			Variant: string(t.variant),
			Version: t.version.String(),
			Config:  c.RuntimeConfig,
			Unit:    t.variant.RuntimeUnit(),
			Socket:  t.variant.CRISocket(),
			Journal: t.engine.JournalPath(),
		},
		Mode:    string(t.spec.Mode),
		Prefix:  c.prefix(),
		Suffix:  c.Suffix,
		Dest:    c.dest(),
		Payload: c.Payload,
	}
	for _, h := range t.spec.Handlers {
		r.Handlers = append(r.Handlers, noderecord.Handler{Name: h.Name, Shim: h.Shim, ShimPath: h.ShimPath, ConfigPath: h.ConfigPath, Snapshotter: h.Snapshotter})
	}
	if prev != nil {
		r.StateDirs = prev.StateDirs
		r.ConfigFiles = prev.ConfigFiles
	} else {
		r.StateDirs = c.stateDirsMade
	}
	return r
}

// saveRecord writes rec with state.
func (c *Config) saveRecord(root *hostfs.Root, rec *noderecord.Record, state noderecord.State) error {
	rec.State = state
	return noderecord.Save(root, rec, time.Now())
}

// forgetRecord puts the record back as it was before this run (prev, or
// none), once everything this run did has been undone.
func (c *Config) forgetRecord(root *hostfs.Root, rec, prev *noderecord.Record) {
	var err error
	if prev != nil {
		err = noderecord.Save(root, prev, prev.Updated)
	} else {
		err = noderecord.Remove(root, rec)
	}
	if err != nil {
		c.log().Error("cannot put the install record back", "path", noderecord.PathFor(rec.Suffix), "err", err)
	}
}

// adopt makes this Config act on the install rec describes, whatever its
// own flags say: the record knows where the install is and which runtime
// it configured. It warns about each flag the record overrides.
func (c *Config) adopt(rec *noderecord.Record) {
	shims, def := rec.Shims()
	override := func(flag, given, recorded string) {
		if given != "" && given != recorded {
			c.log().Warn("acting on the install the node records, not on the flag", "flag", flag, "given", given, "recorded", recorded, "record", noderecord.PathFor(rec.Suffix))
		}
	}
	override("prefix", c.Prefix, rec.Prefix)
	if c.Runtime != "" && c.Runtime != "auto" {
		override("runtime", c.Runtime, rec.Runtime.Variant)
	}
	override("runtime-config", c.RuntimeConfig, rec.Runtime.Config)
	c.Prefix = rec.Prefix
	c.Runtime = rec.Runtime.Variant
	c.RuntimeConfig = rec.Runtime.Config
	c.Shims = shims
	c.DefaultShim = def
	c.Mode = runtime.Mode(rec.Mode)
	c.Snapshotters = map[string]string{}
	for _, h := range rec.Handlers[min(1, len(rec.Handlers)):] {
		if h.Snapshotter != "" {
			c.Snapshotters[h.Shim] = h.Snapshotter
		}
	}
	c.recordedVersion = rec.Runtime.Version
}

// configFiles lists the runtime config files an uninstall would change,
// for the record: not the directories and shim links it removes.
func configFiles(ctx context.Context, t *target) ([]string, error) {
	undo, err := t.engine.PlanUninstall(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range undo.Changes {
		switch ch.Op {
		case runtime.RemoveDir, runtime.RemoveSymlink:
			continue
		}
		if !slices.Contains(out, ch.Path) {
			out = append(out, ch.Path)
		}
	}
	return out, nil
}

// finishRecord ends an uninstall's record: with an API server the cleanup
// DaemonSet follows, and it needs to know which runtime to restart, so the
// record stays, marked uninstalled, until the cleanup removes it; without
// one, nothing follows and the record goes now.
func (c *Config) finishRecord(root *hostfs.Root, rec *noderecord.Record) error {
	if c.Node != nil {
		return c.saveRecord(root, rec, noderecord.Uninstalled)
	}
	return noderecord.Remove(root, rec)
}
