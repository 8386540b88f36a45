package runtime

import (
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

func (e *ConfigError) Unwrap() error { return e.Err }
