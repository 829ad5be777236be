package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ternmq/tern/bench/internal/procinfo"
)

const (
	// startTimeout bounds the wait for a started nsqd to accept connections.
	startTimeout = 15 * time.Second
	// stopTimeout bounds the wait for nsqd to exit after SIGTERM before it is killed.
	stopTimeout = 30 * time.Second
	// logTail is how much of nsqd's output an error quotes.
	logTail = 2048
)

// errExitedAtStart means the started nsqd exited before it accepted a connection.
var errExitedAtStart = errors.New("nsqd exited before accepting connections")

// daemon is an nsqd process the tool started. It is used by one goroutine.
type daemon struct {
	cmd     *exec.Cmd
	dir     string // temporary directory holding the data path and the log
	logPath string
	tcpAddr string
	// httpAddr is its HTTP address, when it has one the tool knows of.
	httpAddr string
	// exited is closed once the process has been waited for; waitErr is then its status.
	exited  chan struct{}
	waitErr error
}

// startDaemon starts cfg.NSQDBin on a free loopback port with a fresh temporary data path and
// waits until it accepts connections. It asks for no HTTP listener; a daemon that refuses an
// empty --http-address, and exits, is started again with a free port for it.
func startDaemon(ctx context.Context, cfg config, logger *slog.Logger) (*daemon, error) {
	dir, err := os.MkdirTemp("", "nsqbench-")
	if err != nil {
		return nil, fmt.Errorf("create nsqd directory: %w", err)
	}
	userHTTP, userHTTPAddr := false, ""
	for _, f := range cfg.NSQDFlags {
		if nsqdFlagName(f) == "http-address" {
			userHTTP = true
			_, userHTTPAddr, _ = strings.Cut(f, "=")
		}
	}
	for attempt := 0; ; attempt++ {
		var httpArg []string
		switch {
		case userHTTP:
		case attempt == 0 && !cfg.hasSettings(): // settings are made over HTTP
			httpArg = []string{"--http-address="}
		default:
			port, err := procinfo.FreePort()
			if err != nil {
				_ = os.RemoveAll(dir)
				return nil, err
			}
			httpArg = []string{"--http-address=127.0.0.1:" + strconv.Itoa(port)}
		}
		d, err := launch(ctx, cfg, dir, attempt, httpArg, logger)
		if err == nil {
			d.httpAddr = userHTTPAddr
			if len(httpArg) == 1 {
				d.httpAddr = strings.TrimPrefix(httpArg[0], "--http-address=")
			}
			return d, nil
		}
		if attempt == 0 && !userHTTP && errors.Is(err, errExitedAtStart) {
			logger.Info("nsqd did not start without an HTTP listener; retrying with one", "error", err)
			continue
		}
		_ = os.RemoveAll(dir)
		return nil, err
	}
}

// launch starts one nsqd process in dir and waits until its TCP port accepts connections.
func launch(ctx context.Context, cfg config, dir string, attempt int, httpArg []string, logger *slog.Logger) (*daemon, error) {
	port, err := procinfo.FreePort()
	if err != nil {
		return nil, err
	}
	dataPath := filepath.Join(dir, "data"+strconv.Itoa(attempt))
	if err := os.Mkdir(dataPath, 0o755); err != nil {
		return nil, fmt.Errorf("create nsqd data path: %w", err)
	}
	d := &daemon{
		dir:     dir,
		logPath: filepath.Join(dir, "nsqd"+strconv.Itoa(attempt)+".log"),
		tcpAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return nil, fmt.Errorf("create nsqd log: %w", err)
	}
	defer func() { _ = logFile.Close() }() // the child has its own descriptor

	args := []string{"--tcp-address=" + d.tcpAddr, "--data-path=" + dataPath}
	args = append(args, httpArg...)
	args = append(args, cfg.NSQDFlags...)
	// Not exec.CommandContext: the daemon is stopped with SIGTERM and waited for, never
	// killed outright when the context ends, so its shutdown is part of the check.
	d.cmd = exec.Command(cfg.NSQDBin, args...)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nsqd %s (build it with make build, or pass --nsqd-bin or --nsqd-tcp-address): %w",
			cfg.NSQDBin, err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	logger.Info("started nsqd", "pid", d.cmd.Process.Pid, "args", strings.Join(args, " "), "log", d.logPath)

	if err := d.waitListening(ctx); err != nil {
		if !errors.Is(err, errExitedAtStart) {
			_ = d.kill()
		}
		return nil, err
	}
	return d, nil
}

// waitListening polls the TCP port until it accepts a connection, the process exits, ctx
// ends or startTimeout passes.
func (d *daemon) waitListening(ctx context.Context) error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	retry := time.NewTicker(20 * time.Millisecond)
	defer retry.Stop()
	for {
		conn, err := net.DialTimeout("tcp", d.tcpAddr, time.Second)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%w (%v); its output:\n%s", errExitedAtStart, d.waitErr, d.tail())
		case <-ctx.Done():
			return fmt.Errorf("wait for nsqd: %w", ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("nsqd did not accept connections on %s within %v: %w", d.tcpAddr, startTimeout, err)
		case <-retry.C:
		}
	}
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func (d *daemon) peakRSS() (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(d.cmd.Process.Pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("read nsqd status: %w", err)
	}
	defer func() { _ = f.Close() }()
	return procinfo.StatusKB(f, "VmHWM:")
}

// diskWritten returns what the process made the kernel write to storage (write_bytes of
// /proc/<pid>/io).
func (d *daemon) diskWritten() (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(d.cmd.Process.Pid), "io"))
	if err != nil {
		return 0, fmt.Errorf("read nsqd io: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no write_bytes in /proc/<pid>/io")
}

// stop sends SIGTERM, waits for the process to exit (killing it after stopTimeout) and
// removes its directory. An unclean exit is an error quoting the daemon's output.
func (d *daemon) stop() error {
	defer func() { _ = os.RemoveAll(d.dir) }()
	select {
	case <-d.exited:
		return fmt.Errorf("nsqd exited during the run (%v); its output:\n%s", d.waitErr, d.tail())
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop nsqd: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-d.exited:
	case <-timer.C:
		_ = d.kill()
		return fmt.Errorf("nsqd did not exit within %v of SIGTERM and was killed; its output:\n%s", stopTimeout, d.tail())
	}
	if d.waitErr != nil {
		return fmt.Errorf("nsqd exited uncleanly (%v); its output:\n%s", d.waitErr, d.tail())
	}
	return nil
}

// kill ends the process at once and waits for it.
func (d *daemon) kill() error {
	err := d.cmd.Process.Kill()
	<-d.exited
	return err
}

// tail returns the end of the daemon's output.
func (d *daemon) tail() string { return procinfo.Tail(d.logPath, logTail) }
