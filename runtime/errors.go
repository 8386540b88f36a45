package runtime

import (
	"errors"
	"fmt"
	"strings"
)

// ConfigError is a problem with a container runtime's config file, naming
// the file, the line and the key at fault. Both config engines return it,
// so an installer can report any of them the same way.
type ConfigError struct {
	Path string // host path of the file
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key; "" when not about one key
	Err  error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// ErrStalePlan matches a *StalePlanError with errors.Is.
var ErrStalePlan = errors.New("plan is stale")

// StalePlanError says a host path no longer holds what a plan saw when it
// was made: someone changed it since, so applying would overwrite their
// change. Nothing was written; make the plan again. Both config engines
// return it from Apply.
type StalePlanError struct {
	Path string // host path
	// Read says the plan only read Path (a config it imports, the main
	// config whose version it chose by, a drop-in directory it listed):
	// what it would write was decided on content that is no longer there.
	Read bool
}

func (e *StalePlanError) Error() string {
	if e.Read {
		return e.Path + ": config changed since it was planned: re-plan"
	}
	return e.Path + " changed since the plan was made; plan again"
}

// Is makes errors.Is(err, ErrStalePlan) true.
func (e *StalePlanError) Is(target error) bool { return target == ErrStalePlan }

// ForeignPlanError says Apply was given a plan that another engine made
// (or one no engine made): a plan holds the edits of one runtime's config
// with one engine's name, and applying it elsewhere would write files that
// engine's journal does not know. Nothing was written.
type ForeignPlanError struct {
	Made    string // the engine that made the plan, "" if none
	Applier string // the engine asked to apply it
}

func (e *ForeignPlanError) Error() string {
	made := e.Made
	if made == "" {
		made = "no engine"
	}
	return fmt.Sprintf("the plan was made by %s, not by %s: apply a plan with the engine that made it", made, e.Applier)
}

// NotServingError says the container runtime answers on its CRI socket
// but does not serve some handlers: its config does not name them, or it
// ignored them (CRI-O ignores a handler whose shim is missing; the
// runtime's log says why). runtime/cri's Verify returns it.
type NotServingError struct {
	Socket  string   // host path of the CRI socket asked
	Missing []string // the handlers it does not serve
}

func (e *NotServingError) Error() string {
	return fmt.Sprintf("the runtime on %s does not serve handlers %s (its log says why; CRI-O ignores a handler whose shim is missing)", e.Socket, strings.Join(e.Missing, ", "))
}
