package main

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchMask is what makes the source read again: entries created,
// deleted, renamed or written, attributes changed (chmod, touch, and the
// link count that drops when a file is renamed over or deleted), and a
// watched file or directory itself deleted or moved. Not IN_OPEN,
// IN_ACCESS or IN_CLOSE_NOWRITE: the source's own reads would wake it.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// watcher is one inotify instance. It only says that something changed:
// the source then reads everything again, so an event's details, a lost
// event (IN_Q_OVERFLOW) or one more than needed cannot make it wrong.
// Its methods other than the reader are called from one goroutine.
type watcher struct {
	fd int
	// f is fd read through the runtime's poller, so that closing it ends
	// a blocked read. f.Fd() would make fd blocking, so the inotify calls
	// use fd directly.
	f     *os.File
	wds   map[int]bool  // watch descriptors set by the last reading
	next  map[int]bool  // those set by the reading under way
	errs  []error       // failures to watch in the reading under way
	dirty chan struct{} // holds a token when something changed since taken
	done  chan struct{} // closed when the reader ends, after err is set
	err   error         // why the reader ended; nil after close
}

func newWatcher() (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	w := &watcher{fd: fd, f: os.NewFile(uintptr(fd), "inotify"), wds: map[int]bool{}, next: map[int]bool{},
		dirty: make(chan struct{}, 1), done: make(chan struct{})}
	go w.read()
	return w, nil
}

func (w *watcher) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.err = fmt.Errorf("reading inotify events: %w", err)
			}
			close(w.done)
			return
		}
		if changed(buf[:n]) {
			select {
			case w.dirty <- struct{}{}:
			default:
			}
		}
	}
}

// changed reports whether events hold anything but IN_IGNORED, which
// only says that a watch was removed (by commit, or with its inode).
func changed(events []byte) bool {
	for len(events) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&events[0]))
		if ev.Mask&^unix.IN_IGNORED != 0 {
			return true
		}
		events = events[unix.SizeofInotifyEvent+int(ev.Len):]
	}
	return false
}

// watch watches p (following symlinks) for the reading under way; a
// path that does not exist is skipped (its parent's watch sees it
// appear). commit ends the reading.
func (w *watcher) watch(p string) {
	wd, err := unix.InotifyAddWatch(w.fd, p, watchMask)
	switch {
	case err == nil:
		w.next[wd] = true
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
	case errors.Is(err, unix.ENOSPC):
		w.errs = append(w.errs, fmt.Errorf("watching %s: the inotify watch limit is reached (sysctl fs.inotify.max_user_watches): its changes are not seen", p))
	default:
		w.errs = append(w.errs, fmt.Errorf("watching %s: %w: its changes are not seen", p, err))
	}
}

// commit removes the watches that the reading just ended did not set
// again (an inode renamed over, a symlink swapped: the path is watched
// anew on what it now reaches) and returns the failures to watch.
func (w *watcher) commit() []error {
	for wd := range w.wds {
		if !w.next[wd] {
			// EINVAL when the inode is gone, and its watch with it.
			_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
		}
	}
	w.wds, w.next = w.next, map[int]bool{}
	errs := w.errs
	w.errs = nil
	return errs
}

// close stops the reader and releases the instance and its watches.
func (w *watcher) close() {
	w.f.Close()
	<-w.done
}
