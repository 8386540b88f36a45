package artifacts

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/tarsafe"
)

// EntryError names a tarball entry, or a payload file, that was refused
// and why; Err is one of the ErrUnsafe* reasons or a read error. Nothing
// was installed when it is returned.
type EntryError = tarsafe.EntryError

// Reasons a payload entry is refused, wrapped by *EntryError.
var (
	ErrUnsafeAbsolutePath = tarsafe.ErrAbsolutePath
	ErrUnsafeDotDot       = tarsafe.ErrDotDot
	ErrUnsafeLink         = tarsafe.ErrLinkOutside
	ErrUnsafeSpecialFile  = tarsafe.ErrSpecialFile
	ErrUnsafeSetuid       = tarsafe.ErrSetuid
	ErrUnsafeBelowLink    = tarsafe.ErrBelowLink
	ErrUnsafeDuplicate    = tarsafe.ErrDuplicate
	ErrTooLarge           = tarsafe.ErrTooLarge
	ErrTooManyEntries     = tarsafe.ErrTooMany
)

// ErrUnknownLayout means the payload holds neither Kata's kata-static tree
// nor the Kata 1.x layout.
var ErrUnknownLayout = errors.New("payload is not a Kata payload")

// ErrNotInstalled means no installation record exists at the destination.
var ErrNotInstalled = errors.New("kata is not installed here")

// ErrUnsupportedSetting means a Kata setting was asked of a payload whose
// Kata cannot read drop-ins (Kata 1.x).
var ErrUnsupportedSetting = errors.New("setting needs Kata 2 or later (config.d drop-ins)")

// MissingShimError is a handler whose shim the payload has no Kata
// configuration for (Report.CheckHandlers, WithHandlers).
type MissingShimError struct {
	Handler string   // the handler, e.g. "kata-fc"
	Shim    string   // its shim, e.g. "fc"
	Dest    string   // the payload's installation
	Has     []string // the shims the payload has configurations for, sorted
}

func (e *MissingShimError) Error() string {
	return fmt.Sprintf("handler %s: the payload at %s has no Kata config for shim %s (it has: %s)", e.Handler, e.Dest, e.Shim, strings.Join(e.Has, ", "))
}

// ChecksumError reports a payload file that does not match its manifest
// (SHA256SUMS), or a manifest line naming a file the payload lacks.
type ChecksumError struct {
	Path string // relative to the payload's root
	Want string // digest in the manifest, "" if the file is not listed
	Got  string // digest of the file, "" if it is missing
}

func (e *ChecksumError) Error() string {
	switch {
	case e.Want == "":
		return fmt.Sprintf("payload file %s is not listed in the manifest", e.Path)
	case e.Got == "":
		return fmt.Sprintf("manifest lists %s, which the payload lacks", e.Path)
	default:
		return fmt.Sprintf("payload file %s: sha256 %s, manifest says %s", e.Path, e.Got, e.Want)
	}
}

// ConflictError reports a file kata-deploy does not own standing where the
// new payload needs a directory, or the reverse: it is kept, so the
// installation stops.
type ConflictError struct {
	Path string // host path
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s: not installed by kata-deploy and in the way of the payload", e.Path)
}
