package artifacts

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// Report says what Install, Plan or Uninstall changed, or would change.
// Paths are host paths; directories end in "/".
type Report struct {
	Dest string `json:"dest"` // host path of the installation
	// Installation is the install the payload is for; Dest is its Dest.
	Installation runtime.Installation `json:"-"`
	Layout       Layout               `json:"layout,omitempty"`  // payload layout (Install and Plan)
	Added        []string             `json:"added,omitempty"`   // new entries
	Changed      []string             `json:"changed,omitempty"` // entries whose content, mode, type or target changes
	Removed      []string             `json:"removed,omitempty"` // entries no longer in the payload, or uninstalled
	Kept         []string             `json:"kept,omitempty"`    // entries kata-deploy does not own, left in place
	Shims        map[string]string    `json:"shims,omitempty"`   // shim -> configuration path to give the container runtime
	// Previous is whether Install (or Plan) found an installed payload at
	// the destination, after finishing or rolling back an interrupted run:
	// false means this Install put the first one there, so the caller that
	// must undo it removes it (Uninstall), and otherwise leaves it.
	Previous bool `json:"previous,omitempty"`
}

// HasChanges reports whether anything was, or would be, written.
func (r *Report) HasChanges() bool {
	return len(r.Added)+len(r.Changed)+len(r.Removed) > 0
}

// String lists the changes one per line: "+" added, "~" changed, "-"
// removed, "=" kept (not ours).
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)\n", r.Dest, orDash(string(r.Layout)))
	for _, l := range []struct {
		mark  string
		paths []string
	}{{"+", r.Added}, {"~", r.Changed}, {"-", r.Removed}, {"=", r.Kept}} {
		for _, p := range l.paths {
			fmt.Fprintf(&b, "%s %s\n", l.mark, p)
		}
	}
	if !r.HasChanges() {
		b.WriteString("no changes\n")
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (r *Report) sort() {
	for _, l := range [][]string{r.Added, r.Changed, r.Removed, r.Kept} {
		slices.Sort(l)
	}
}
