package tomltext

import (
	"context"
	"errors"
	"fmt"

	"github.com/kata-deploy/kata-deploy/runtime"
)

// ConfigError names the file of an error from Decode: a *runtime.ConfigError
// with the line and key an *Error gives, or a plain wrapped error when ctx
// ended, which says nothing about the file. Both config engines report
// decoding errors through it, so they name files the same way.
func ConfigError(path string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var te *Error
	if errors.As(err, &te) {
		line, key, msg := te.Parts()
		return &runtime.ConfigError{Path: path, Line: line, Key: key, Err: msg}
	}
	return &runtime.ConfigError{Path: path, Err: err}
}
