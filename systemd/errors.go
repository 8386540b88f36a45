package systemd

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnitNotFound says that systemd has no unit by that name (its LoadState
// is "not-found"). Test with errors.Is.
var ErrUnitNotFound = errors.New("unit not found")

// ErrUnitNotLoaded says that the unit exists but systemd could not load it:
// it is masked, or its unit file is broken (LoadState "masked", "error",
// "bad-setting"). Test with errors.Is.
var ErrUnitNotLoaded = errors.New("unit not loaded")

// ErrJobFailed says that systemd finished a job with a result other than
// "done"; UnitError.Result holds the result. Test with errors.Is.
var ErrJobFailed = errors.New("job did not complete")

// UnitError describes a failed operation on a unit together with the state
// systemd reported for it afterwards, so that the message alone explains
// what happened on the node.
type UnitError struct {
	// Unit is the unit's name, e.g. "containerd.service".
	Unit string
	// Op is the operation: "restart", "status".
	Op string
	// Result is systemd's job result when a job ran ("failed", "timeout",
	// "canceled", "dependency", "skipped", ...), or "" when none did.
	Result string
	// LoadState, ActiveState and SubState are the unit's state after the
	// operation, when they could be read.
	LoadState, ActiveState, SubState string
	// Err is the cause: ErrUnitNotFound, ErrUnitNotLoaded, ErrJobFailed, a
	// context error or a D-Bus error.
	Err error
}

// Error names the operation, the unit, the job result if any, the cause and
// the unit's state afterwards.
func (e *UnitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "systemd: %s %s", e.Op, e.Unit)
	if e.Result != "" {
		fmt.Fprintf(&b, ": job result %q", e.Result)
	}
	if e.Err != nil && !(e.Result != "" && errors.Is(e.Err, ErrJobFailed)) {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.ActiveState != "" || e.LoadState != "" {
		fmt.Fprintf(&b, " (unit now %s", orDash(e.LoadState))
		fmt.Fprintf(&b, "/%s/%s)", orDash(e.ActiveState), orDash(e.SubState))
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *UnitError) Unwrap() error { return e.Err }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
