// Package tomltext writes TOML keys and strings as text, for the config
// engines that add lines to files without re-encoding them and for the
// Kata drop-ins artifacts generates, so every file kata-deploy writes
// quotes the same way.
package tomltext

import (
	"fmt"
	"strings"
)

// Key writes one key part: bare when TOML allows it, else quoted.
func Key(k string) string {
	if k != "" && strings.IndexFunc(k, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0 {
		return k
	}
	return String(k)
}

// DottedKey writes a key path such as plugins."io.containerd.grpc.v1.cri".
func DottedKey(parts ...string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = Key(p)
	}
	return strings.Join(q, ".")
}

// String writes s as a TOML basic string.
func String(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// StringArray writes ss as a one-line TOML array of basic strings.
func StringArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = String(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
