package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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
	// startTimeout bounds the wait for a started nsqd to answer /ping.
	startTimeout = 2 * time.Minute
	// stopTimeout bounds the wait for nsqd to exit after SIGTERM before it is killed.
	stopTimeout = 2 * time.Minute
	// logTail is how much of nsqd's output an error quotes.
	logTail = 2048
)

// daemon is an nsqd process the tool started, on fixed loopback ports and a data path that
// outlive a restart. It is used by one goroutine.
type daemon struct {
	bin, dir, dataPath string
	flags              []string
	tcpAddr, httpAddr  string
	logger             *slog.Logger
	http               *http.Client

	// Of the running process, set by launch.
	cmd     *exec.Cmd
	logPath string
	started time.Time
	// exited is closed once the process has been waited for; waitErr is then its status.
	exited  chan struct{}
	waitErr error
	runs    int
}

// startDaemon starts cfg.NSQDBin on free loopback ports with a fresh temporary data path and
// waits until it answers /ping.
func startDaemon(ctx context.Context, cfg config, logger *slog.Logger) (*daemon, error) {
	dir, err := os.MkdirTemp("", "nsqscale-")
	if err != nil {
		return nil, fmt.Errorf("create nsqd directory: %w", err)
	}
	d := &daemon{
		bin: cfg.NSQDBin, dir: dir, dataPath: filepath.Join(dir, "data"), flags: cfg.NSQDFlags,
		logger: logger,
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
		}},
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.Mkdir(d.dataPath, 0o755); err != nil {
		return nil, fmt.Errorf("create nsqd data path: %w", err)
	}
	for _, addr := range []*string{&d.tcpAddr, &d.httpAddr} {
		port, err := procinfo.FreePort()
		if err != nil {
			return nil, err
		}
		*addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	if err := d.launch(); err != nil {
		return nil, err
	}
	if _, err := d.waitPing(ctx); err != nil {
		_ = d.kill()
		return nil, err
	}
	ok = true
	return d, nil
}

// launch starts the process once more on the same ports and data path; d.started is the
// moment before the exec.
func (d *daemon) launch() error {
	d.runs++
	d.logPath = filepath.Join(d.dir, "nsqd"+strconv.Itoa(d.runs)+".log")
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return fmt.Errorf("create nsqd log: %w", err)
	}
	defer func() { _ = logFile.Close() }() // the child has its own descriptor
	args := append([]string{"--tcp-address=" + d.tcpAddr, "--http-address=" + d.httpAddr,
		"--data-path=" + d.dataPath}, d.flags...)
	// Not exec.CommandContext: the daemon is stopped with SIGTERM and waited for, never
	// killed outright when the context ends, so that its shutdown is measured.
	d.cmd = exec.Command(d.bin, args...)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.exited = make(chan struct{})
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("start nsqd %s (build it with make build, or pass --nsqd-bin): %w", d.bin, err)
	}
	exited, cmd := d.exited, d.cmd
	go func() {
		d.waitErr = cmd.Wait()
		close(exited)
	}()
	d.logger.Info("started nsqd", "pid", d.cmd.Process.Pid, "args", strings.Join(args, " "), "log", d.logPath)
	return nil
}

// waitPing polls /ping every 5ms until it answers 200 OK and returns the time since the
// exec.
func (d *daemon) waitPing(ctx context.Context) (time.Duration, error) {
	deadline := d.started.Add(startTimeout)
	for {
		if body, status, _, err := d.get(ctx, "/ping"); err == nil && status == http.StatusOK &&
			strings.TrimSpace(string(body)) == "OK" {
			return time.Since(d.started), nil
		}
		select {
		case <-d.exited:
			return 0, fmt.Errorf("nsqd exited at start (%v); its output:\n%s", d.waitErr, d.tail())
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for nsqd: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("nsqd did not answer /ping on %s within %v", d.httpAddr, startTimeout)
		}
	}
}

// get requests path on the daemon's HTTP API and returns the body, the status and the time
// from sending the request to reading the last byte of the body.
func (d *daemon) get(ctx context.Context, path string) ([]byte, int, time.Duration, error) {
	return d.do(ctx, http.MethodGet, path)
}

// post requests path with POST and fails unless the answer is 200.
func (d *daemon) post(ctx context.Context, path string, query url.Values) error {
	body, status, _, err := d.do(ctx, http.MethodPost, path+"?"+query.Encode())
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("POST %s?%s: %d %s", path, query.Encode(), status, bytes.TrimSpace(body))
	}
	return nil
}

func (d *daemon) do(ctx context.Context, method, path string) ([]byte, int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+d.httpAddr+path, nil)
	if err != nil {
		return nil, 0, 0, err
	}
	start := time.Now()
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return body, resp.StatusCode, elapsed, nil
}

// profile saves /debug/pprof/<what> (for instance "heap", or "profile?seconds=10" for CPU)
// to dir/name, when dir is set; a daemon without it is logged, not an error.
func (d *daemon) profile(ctx context.Context, dir, name, what string) {
	if dir == "" {
		return
	}
	body, status, _, err := d.get(ctx, "/debug/pprof/"+what)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("GET /debug/pprof/%s: %d", what, status)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name), body, 0o644)
	}
	if err != nil {
		d.logger.Warn("no profile", "name", name, "error", err)
		return
	}
	d.logger.Info("saved profile", "path", filepath.Join(dir, name))
}

// cpuProfile starts a CPU profile of the given length and returns a function that waits for
// it to be saved; nothing happens unless dir is set.
func (d *daemon) cpuProfile(ctx context.Context, dir, name string, length time.Duration) (wait func()) {
	if dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.profile(ctx, dir, name, "profile?seconds="+strconv.Itoa(max(int(length.Seconds()), 1)))
	}()
	return func() { <-done }
}

// statsJSON is what the tool reads of /stats?format=json, the same in NSQ and Tern.
type statsJSON struct {
	Topics []struct {
		Name     string `json:"topic_name"`
		Depth    int64  `json:"depth"`
		Channels []struct {
			Name          string `json:"channel_name"`
			Depth         int64  `json:"depth"`
			InFlightCount int64  `json:"in_flight_count"`
			MessageCount  uint64 `json:"message_count"`
			ClientCount   int    `json:"client_count"`
		} `json:"channels"`
	} `json:"topics"`
}

// stats fetches and decodes /stats?format=json without clients, for one topic or all.
func (d *daemon) stats(ctx context.Context, topic string) (statsJSON, error) {
	q := url.Values{"format": {"json"}, "include_clients": {"false"}, "include_mem": {"false"}}
	if topic != "" {
		q.Set("topic", topic)
	}
	body, status, _, err := d.get(ctx, "/stats?"+q.Encode())
	if err != nil {
		return statsJSON{}, err
	}
	if status != http.StatusOK {
		return statsJSON{}, fmt.Errorf("GET /stats: %d %s", status, bytes.TrimSpace(body))
	}
	var s statsJSON
	if err := json.Unmarshal(body, &s); err != nil {
		return statsJSON{}, fmt.Errorf("decode /stats: %w", err)
	}
	return s, nil
}

// rss returns the process's resident set size (VmRSS) in bytes.
func (d *daemon) rss() (int64, error) {
	return d.status("VmRSS:")
}

// status reads one "Name:  123 kB" line of /proc/<pid>/status, in bytes.
func (d *daemon) status(field string) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(d.cmd.Process.Pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("read nsqd status: %w", err)
	}
	defer func() { _ = f.Close() }()
	return procinfo.StatusKB(f, field)
}

// cpuTime returns the CPU time the process has used, user and system. /proc counts it in
// ticks of USER_HZ, which Linux fixes at 100 a second: a resolution of 10ms.
func (d *daemon) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(d.cmd.Process.Pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("read nsqd stat: %w", err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU returns utime + stime of a /proc/<pid>/stat line. The fields are counted
// after the command name, which is in parentheses and may hold spaces.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	fields := strings.Fields(stat[i+1:])
	// fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed stat %q: %w", stat, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// openFiles counts the process's open file descriptors.
func (d *daemon) openFiles() (int, error) {
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(d.cmd.Process.Pid), "fd"))
	if err != nil {
		return 0, fmt.Errorf("list nsqd descriptors: %w", err)
	}
	return len(ents), nil
}

// diskUsage returns the bytes of the data path's files (their apparent sizes).
func (d *daemon) diskUsage() (int64, error) {
	var total int64
	err := filepath.WalkDir(d.dataPath, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	return total, err
}

// terminate sends SIGTERM and waits for the process to exit, killing it after stopTimeout,
// and returns how long the exit took. An unclean exit is an error quoting the daemon's
// output.
func (d *daemon) terminate() (time.Duration, error) {
	select {
	case <-d.exited:
		return 0, fmt.Errorf("nsqd exited during the run (%v); its output:\n%s", d.waitErr, d.tail())
	default:
	}
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("stop nsqd: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-d.exited:
	case <-timer.C:
		_ = d.kill()
		return 0, fmt.Errorf("nsqd did not exit within %v of SIGTERM and was killed; its output:\n%s", stopTimeout, d.tail())
	}
	elapsed := time.Since(start)
	if d.waitErr != nil {
		return elapsed, fmt.Errorf("nsqd exited uncleanly (%v); its output:\n%s", d.waitErr, d.tail())
	}
	return elapsed, nil
}

// close stops a running process as terminate does and removes the directory.
func (d *daemon) close() error {
	defer func() { _ = os.RemoveAll(d.dir) }()
	d.http.CloseIdleConnections()
	select {
	case <-d.exited:
		return nil
	default:
	}
	_, err := d.terminate()
	return err
}

// kill ends the process at once and waits for it.
func (d *daemon) kill() error {
	err := d.cmd.Process.Kill()
	<-d.exited
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// tail returns the end of the daemon's output.
func (d *daemon) tail() string { return procinfo.Tail(d.logPath, logTail) }

// quietRSS waits settle for the daemon to go quiet and returns its RSS then.
func (d *daemon) quietRSS(ctx context.Context, settle time.Duration) (int64, error) {
	rss, _, err := d.quiet(ctx, settle)
	return rss, err
}

// quiet waits settle and returns the daemon's RSS then and the share of one core it used
// meanwhile (0 when settle is too short to tell).
func (d *daemon) quiet(ctx context.Context, settle time.Duration) (rss int64, cpu float64, err error) {
	cpu0, err := d.cpuTime()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := sleep(ctx, settle); err != nil {
		return 0, 0, err
	}
	cpu1, err := d.cpuTime()
	if err != nil {
		return 0, 0, err
	}
	if elapsed := time.Since(start); elapsed >= time.Second {
		cpu = float64(cpu1-cpu0) / float64(elapsed)
	}
	rss, err = d.rss()
	return rss, cpu, err
}
