package protocol

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// Network returns the network of a listen or dial address as NSQ 1.2+ reads one: "tcp" for
// host:port, "unix" for anything else, a path to a unix domain socket.
func Network(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return "tcp"
	}
	return "unix"
}

// Listen listens on addr, a TCP host:port or a unix socket path. A socket file left behind by
// a process that died without removing it (nobody accepts on it) is removed and replaced; a
// live one is an error, as a port in use is. The listener removes its socket file when closed.
func Listen(addr string) (net.Listener, error) {
	network := Network(addr)
	ln, err := net.Listen(network, addr)
	if err == nil || network != "unix" || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	if c, derr := net.DialTimeout("unix", addr, time.Second); derr == nil {
		_ = c.Close()
		return nil, fmt.Errorf("listen on %s: another process is listening on the socket: %w", addr, err)
	}
	if fi, serr := os.Lstat(addr); serr != nil || fi.Mode().Type() != os.ModeSocket {
		return nil, err // not a socket: leave the file alone
	}
	if rerr := os.Remove(addr); rerr != nil {
		return nil, fmt.Errorf("listen on %s: remove the stale socket: %w", addr, rerr)
	}
	return net.Listen(network, addr)
}

// ListenPort returns the port a listener address has, as NSQ reports it in /info and to
// nsqlookupd: the TCP port, -1 for a unix socket, 0 for no listener.
func ListenPort(a net.Addr) int {
	switch a := a.(type) {
	case nil:
		return 0
	case *net.TCPAddr:
		return a.Port
	}
	return -1
}
