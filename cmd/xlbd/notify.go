package main

import (
	"net"
	"os"
)

// notify tells systemd about xlbd's state (sd_notify(3)): a datagram to
// the socket systemd names in $NOTIFY_SOCKET for a Type=notify service.
// Without the variable (not started so) it does nothing. A failure is
// returned for the log; it never stops xlbd.
func notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	// Go maps a leading '@' to the abstract namespace, as systemd means.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
