package journal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
)

// LockPath is the host file every Apply, of any engine and any engine
// name, holds an flock on while it checks and changes the host, so that
// two applies never interleave: without it, two installs under different
// names on one containerd config both read its imports list and each
// wrote it back with only its own entry.
//
// Why a file of its own, and not an flock on Dir itself as the
// kata-installer command takes: flock conflicts between two open file
// descriptions of the same directory even in one process, so an engine
// locking Dir inside an installer that already holds Dir would wait for
// itself forever. A separate file never conflicts with the installer's
// lock, and the order is always the installer's lock first, then this
// one, so the two cannot deadlock. The file exists only while held
// (hostfs.Root.LockTransient), so a host whose journals are all gone is
// left as it was found.
const LockPath = Dir + "/.apply.lock"

// lock takes the apply lock, making Dir if need be. It returns the
// directories it made (outermost first), which hold nothing but the lock
// file: the caller records them as the journal's state directories if it
// keeps a journal there, and has unlock remove them (once empty) if it
// does not.
//
// Which directories an apply made must be exact, or they outlive every
// journal: two applies making Dir at once would each make part of the
// chain, and neither would know the whole. So the state directories are
// only ever made and removed while holding an flock on the host root
// directory, held just for that moment (never while waiting for the apply
// lock, so the two cannot deadlock).
func lock(ctx context.Context, root *hostfs.Root) (made []string, unlock func(dirs []string) error, err error) {
	for {
		var lockErr error
		err := withRootLock(ctx, root, func() error {
			made, err = root.MkdirAll(Dir, 0o700)
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("apply lock: %w (the state directory %s must be writable)", err, Dir)
		}
		release, err := root.LockTransient(ctx, LockPath)
		if errors.Is(err, fs.ErrNotExist) {
			// An apply that held the lock removed Dir, emptied by its
			// uninstall, while this one waited: make it again.
			if err := ctx.Err(); err != nil {
				return nil, nil, fmt.Errorf("apply lock: %w", err)
			}
			continue
		}
		if err != nil {
			lockErr = err
			_ = withRootLock(context.WithoutCancel(ctx), root, func() error {
				_, err := root.RemoveEmptyDirs(made)
				return err
			})
			return nil, nil, fmt.Errorf("apply lock: %w", lockErr)
		}
		return made, func(dirs []string) error {
			return withRootLock(context.WithoutCancel(ctx), root, func() error {
				release()
				_, err := root.RemoveEmptyDirs(dirs)
				return err
			})
		}, nil
	}
}

// withRootLock runs do holding an flock on the host root directory.
func withRootLock(ctx context.Context, root *hostfs.Root, do func() error) error {
	d, err := root.OpenDir("/")
	if err != nil {
		return err
	}
	defer d.Close()
	unlock, err := d.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return do()
}
