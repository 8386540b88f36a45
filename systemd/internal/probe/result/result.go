// Package result is the JSON the probe command prints, shared with the
// tests that read it.
package result

import (
	"context"
	"errors"
	"time"

	"github.com/kata-deploy/kata-deploy/systemd"
)

// Result is what the probe prints.
type Result struct {
	Status   *systemd.UnitStatus `json:"status,omitempty"`
	Decision *systemd.Decision   `json:"decision,omitempty"`
	Exists   *bool               `json:"exists,omitempty"`
	Error    *Error              `json:"error,omitempty"`
	Elapsed  time.Duration       `json:"elapsed"`
}

// Error is an error with the fields of *systemd.UnitError and what it wraps.
type Error struct {
	Message     string `json:"message"`
	Unit        string `json:"unit,omitempty"`
	Op          string `json:"op,omitempty"`
	Result      string `json:"result,omitempty"`
	LoadState   string `json:"loadState,omitempty"`
	ActiveState string `json:"activeState,omitempty"`
	SubState    string `json:"subState,omitempty"`
	NotFound    bool   `json:"notFound,omitempty"`
	NotLoaded   bool   `json:"notLoaded,omitempty"`
	JobFailed   bool   `json:"jobFailed,omitempty"`
	Deadline    bool   `json:"deadline,omitempty"`
}

// Describe turns an error from the systemd package into an Error.
func Describe(err error) *Error {
	if err == nil {
		return nil
	}
	e := &Error{
		Message:   err.Error(),
		NotFound:  errors.Is(err, systemd.ErrUnitNotFound),
		NotLoaded: errors.Is(err, systemd.ErrUnitNotLoaded),
		JobFailed: errors.Is(err, systemd.ErrJobFailed),
		Deadline:  errors.Is(err, context.DeadlineExceeded),
	}
	var ue *systemd.UnitError
	if errors.As(err, &ue) {
		e.Unit, e.Op, e.Result = ue.Unit, ue.Op, ue.Result
		e.LoadState, e.ActiveState, e.SubState = ue.LoadState, ue.ActiveState, ue.SubState
	}
	return e
}
