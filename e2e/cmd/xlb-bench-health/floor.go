package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// On loopback the kernel's TCP work for both ends of a probe (the
// listener's SYN-ACK and its handling of the RST included) runs in the
// connecting process's system calls, so part of the plugin's system time
// is a floor no checker removes. -floor measures it: a child process does
// only the system calls of a check (socket, connect, epoll_ctl, epoll_wait,
// SO_LINGER, close), 1,000 at a time, over the same backends at the same
// rate, and its CPU time is reported next to the plugin's.

// floorBatch is how many connects the floor loop has in flight at once (the
// tcp plugin's default concurrency).
const floorBatch = 1000

// floor runs the floor loop for one interval of warm-up and duration, and
// returns its CPU time per second of wall time.
func floor(exe string, n int, interval, duration time.Duration) (cpuTime, time.Duration, error) {
	cmd := exec.Command(exe, "-floor-loop", "-targets", strconv.Itoa(n), "-interval", interval.String())
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return cpuTime{}, 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(interval)
	start, cpu0 := time.Now(), cpuOf(cmd.Process.Pid)
	time.Sleep(duration)
	return cpuOf(cmd.Process.Pid).sub(cpu0), time.Since(start), nil
}

// floorLoop connects to the n backends in batches of floorBatch, each
// backend once per interval, and closes each connection with a RST; it
// runs until killed.
func floorLoop(n int, interval time.Duration) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	batch := min(floorBatch, n)
	period := interval * time.Duration(batch) / time.Duration(n)
	fds := make([]int, batch)
	events := make([]unix.EpollEvent, 256)
	linger := unix.Linger{Onoff: 1, Linger: 0}
	sa := unix.SockaddrInet4{Port: port}
	next, target, failed := time.Now(), 0, 0
	for {
		inflight := 0
		for k := range batch {
			sa.Addr = backendAddr(target).As4()
			target = (target + 1) % n
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
			if err != nil {
				return err
			}
			if err := unix.Connect(fd, &sa); err != unix.EINPROGRESS {
				unix.Close(fd)
				failed++
				continue
			}
			ev := unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(k)}
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
				return err
			}
			fds[k] = fd
			inflight++
		}
		for inflight > 0 {
			m, err := unix.EpollWait(ep, events, 1000)
			if err != nil && err != unix.EINTR {
				return err
			}
			for _, ev := range events[:max(m, 0)] {
				if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
					failed++
				}
				fd := fds[ev.Fd]
				_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &linger)
				unix.Close(fd)
				inflight--
			}
		}
		if failed > 0 {
			return fmt.Errorf("%d connects failed", failed)
		}
		next = next.Add(period)
		time.Sleep(time.Until(next))
	}
}
