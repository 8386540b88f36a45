package artifacts

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/kata-deploy/kata-deploy/internal/hostfs"
	"golang.org/x/sys/unix"
)

// kickEvery is how much of a file is written before asking the kernel to
// start writing it back (and at its end): writeback then overlaps the copy
// of the next files instead of all waiting for the final syncfs. Kicking
// more often made the copy itself wait on a congested disk queue.
const kickEvery = 256 << 20

const bufSize = 1 << 20

// copyFile writes n below dst from r, hashing as it goes. dst nil only
// hashes (a dry run). The file gets n's mode exactly; its digest must be
// n.want when the manifest gave one.
func copyFile(dst *hostfs.Dir, n *node, r io.Reader, buf []byte, perFileSync, noKick bool) error {
	var f *os.File
	if dst != nil {
		var err error
		if f, err = dst.Create(n.path, n.mode); err != nil {
			return err
		}
		defer func() {
			if f != nil {
				f.Close()
			}
		}()
	}
	h := newPipeHash(n.size)
	var size, kicked int64
	// Two halves of buf: one is hashed (in another goroutine, for a large
	// file) while the other is filled and written.
	half := len(buf) / 2
	bufs := [2][]byte{buf[:half:half], buf[half:]}
	for i := 0; ; i ^= 1 {
		b := h.take(bufs[i])
		k, rerr := r.Read(b)
		if k > 0 {
			h.give(b[:k])
			if f != nil {
				if _, err := f.Write(b[:k]); err != nil {
					h.close()
					return err
				}
			}
			size += int64(k)
			if f != nil && !perFileSync && !noKick && size-kicked >= kickEvery {
				_ = unix.SyncFileRange(int(f.Fd()), kicked, size-kicked, unix.SYNC_FILE_RANGE_WRITE)
				kicked = size
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			h.close()
			return fmt.Errorf("read %s: %w", n.path, rerr)
		}
	}
	sum := h.close()
	if size != n.size {
		return fmt.Errorf("payload file %s changed while being copied (%d bytes, expected %d)", n.path, size, n.size)
	}
	n.digest = "sha256:" + hex.EncodeToString(sum)
	if n.want != "" && n.digest != n.want {
		return &ChecksumError{Path: n.path, Want: n.want, Got: n.digest}
	}
	if f == nil {
		return nil
	}
	// The umask narrowed the mode at creation; set it exactly.
	if err := f.Chmod(n.mode); err != nil {
		return err
	}
	if perFileSync {
		if err := f.Sync(); err != nil {
			return err
		}
	} else if !noKick && size > kicked {
		_ = unix.SyncFileRange(int(f.Fd()), kicked, size-kicked, unix.SYNC_FILE_RANGE_WRITE)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	k := keyOf(&st)
	n.stat = &k
	err := f.Close()
	f = nil
	return err
}

// copyFileRange is copyFile for a source that is a file: the kernel copies
// (copy_file_range, a reflink where the file system can) while the source
// is hashed from the page cache, which costs a memory copy less than
// reading and writing through a buffer. A source that changes meanwhile
// (its ctime moves) is an error, so the digest is the installed content's.
func copyFileRange(dst *hostfs.Dir, n *node, src *os.File, buf []byte, perFileSync, noKick bool) error {
	var before unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &before); err != nil {
		return err
	}
	// Hash (pread) while the kernel copies: for a large file the two
	// overlap on two cores. Each uses its own half of buf: the copy needs
	// one only if the kernel cannot copy between these file systems.
	hashBuf, copyBuf := buf[:len(buf)/2], buf[len(buf)/2:]
	type result struct {
		sum []byte
		err error
	}
	hashed := make(chan result, 1)
	hashSrc := func() {
		h := sha256.New()
		_, err := io.CopyBuffer(h, onlyReader{io.NewSectionReader(src, 0, n.size)}, hashBuf)
		hashed <- result{h.Sum(nil), err}
	}
	if n.size >= pipeMin {
		go hashSrc()
	} else {
		hashSrc()
	}
	f, err := dst.Create(n.path, n.mode)
	if err != nil {
		<-hashed
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var off int64
	var cerr error
	for off < n.size {
		k, err := unix.CopyFileRange(int(src.Fd()), &off, int(f.Fd()), nil, int(min(n.size-off, 1<<30)), 0)
		if err != nil && off == 0 && kernelCannotCopy(err) {
			// A payload on the image's overlay root and a host directory
			// on another file system: copy through user space.
			off, cerr = io.CopyBuffer(onlyWriter{f}, onlyReader{io.NewSectionReader(src, 0, n.size)}, copyBuf)
			if cerr != nil {
				cerr = fmt.Errorf("copy %s: %w", n.path, cerr)
			}
			break
		}
		if err != nil {
			cerr = fmt.Errorf("copy %s: %w", n.path, err)
			break
		}
		if k == 0 {
			break
		}
	}
	res := <-hashed
	if cerr != nil {
		return cerr
	}
	if res.err != nil {
		return fmt.Errorf("read %s: %w", n.path, res.err)
	}
	n.digest = "sha256:" + hex.EncodeToString(res.sum)
	if n.want != "" && n.digest != n.want {
		return &ChecksumError{Path: n.path, Want: n.want, Got: n.digest}
	}
	var after unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &after); err != nil {
		return err
	}
	if off != n.size || after.Size != n.size || keyOf(&after) != keyOf(&before) {
		return fmt.Errorf("payload file %s changed while being copied", n.path)
	}
	if err := f.Chmod(n.mode); err != nil {
		return err
	}
	if perFileSync {
		if err := f.Sync(); err != nil {
			return err
		}
	} else if !noKick {
		_ = unix.SyncFileRange(int(f.Fd()), 0, n.size, unix.SYNC_FILE_RANGE_WRITE)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	k := keyOf(&st)
	n.stat = &k
	err = f.Close()
	f = nil
	return err
}

// kernelCannotCopy reports whether copy_file_range refused the pair of
// files rather than failing to copy: EXDEV between file systems the kernel
// will not copy across (overlayfs to ext4 or xfs, tmpfs to anything),
// ENOSYS or EOPNOTSUPP where it has no such call, EINVAL from file systems
// that reject it for special files, EPERM from some FUSE and overlay
// setups. These are the errors Go's own io.Copy falls back on.
func kernelCannotCopy(err error) bool {
	switch {
	case errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP),
		errors.Is(err, unix.EINVAL), errors.Is(err, unix.EPERM):
		return true
	}
	return false
}

// onlyWriter hides ReaderFrom so io.CopyBuffer does not try
// copy_file_range again.
type onlyWriter struct{ io.Writer }

// pipeHash hashes buffers in a goroutine of its own for files large enough
// to pay for it, so that hashing overlaps writing; small ones inline.
type pipeHash struct {
	h        hash.Hash
	ch       chan []byte
	ack      chan struct{}
	done     chan struct{}
	inflight int
}

const pipeMin = 4 << 20

func newPipeHash(size int64) *pipeHash {
	p := &pipeHash{h: sha256.New()}
	if size >= pipeMin {
		p.ch, p.ack, p.done = make(chan []byte, 2), make(chan struct{}, 2), make(chan struct{})
		go func() {
			defer close(p.done)
			for b := range p.ch {
				p.h.Write(b)
				p.ack <- struct{}{}
			}
		}()
	}
	return p
}

// take returns b once the hasher is done with it.
func (p *pipeHash) take(b []byte) []byte {
	if p.ch != nil && p.inflight == 2 {
		<-p.ack
		p.inflight--
	}
	return b[:cap(b)]
}

func (p *pipeHash) give(b []byte) {
	if p.ch == nil {
		p.h.Write(b)
		return
	}
	p.inflight++
	p.ch <- b
}

// close waits for the hasher and returns the digest.
func (p *pipeHash) close() []byte {
	if p.ch != nil {
		close(p.ch)
		<-p.done
		p.ch = nil
	}
	return p.h.Sum(nil)
}

// hashFile returns the digest of the regular file rel below d.
func hashFile(d *hostfs.Dir, rel string, buf []byte) (string, error) {
	f, err := d.Open(rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, onlyReader{f}, buf); err != nil {
		return "", fmt.Errorf("hash %s: %w", f.Name(), err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// onlyReader hides WriterTo/ReaderFrom so io.CopyBuffer uses our buffer.
type onlyReader struct{ io.Reader }

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
