package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

const (
	// createWorkers is how many HTTP requests create topics and channels at once.
	createWorkers = 8
	// topicChannels are the channels of every topic of the topics part.
	topicChannelA, topicChannelB = "c0", "c1"
	// restoreTimeout bounds the wait for a restarted daemon to list every topic.
	restoreTimeout = 5 * time.Minute
)

// runTopics is the topics part: --topics topics with two channels and a message each, then
// a restart and what it costs.
func runTopics(ctx context.Context, cfg config, logger *slog.Logger, rep *section) (err error) {
	d, err := startDaemon(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close()) }()
	empty, err := d.quietRSS(ctx, cfg.Settle)
	if err != nil {
		return err
	}
	rep.add("RSS, no topics", "%s", mib(empty))

	names := make([]string, cfg.Topics)
	for i := range names {
		names[i] = fmt.Sprintf("topic_%05d", i)
	}
	start := time.Now()
	if err := createTopics(ctx, d, names); err != nil {
		return err
	}
	elapsed := time.Since(start)
	rep.add(fmt.Sprintf("create %d topics × 2 channels (HTTP)", cfg.Topics), "%.1f s (%.0f topics/s)",
		elapsed.Seconds(), float64(cfg.Topics)/elapsed.Seconds())
	logger.Info("topics created", "topics", cfg.Topics, "elapsed", elapsed)

	start = time.Now()
	if err := publishOneEach(ctx, d.tcpAddr, names, cfg.Heartbeat); err != nil {
		return err
	}
	// Both channels of every topic hold their message before anything is measured.
	if _, err := waitTopics(ctx, d, cfg.Topics, true, restoreTimeout); err != nil {
		return err
	}
	rep.add("PUB 1 message to each topic", "%.2f s", time.Since(start).Seconds())

	loaded, cpu, err := d.quiet(ctx, cfg.Settle)
	if err != nil {
		return err
	}
	rep.add("RSS with the topics", "%s", mib(loaded))
	rep.add("CPU while idle", "%.0f%% of a core", cpu*100)
	if files, err := d.openFiles(); err == nil {
		rep.add("open files", "%d", files)
	}
	if err := reportEndpoints(ctx, d, cfg.Repeat, "", rep); err != nil {
		return err
	}

	shutdown, err := d.terminate()
	if err != nil {
		return err
	}
	rep.add("SIGTERM to exit", "%.2f s", shutdown.Seconds())
	if disk, err := d.diskUsage(); err == nil {
		rep.add("data path", "%s", mib(disk))
	}

	if err := d.launch(); err != nil {
		return err
	}
	ping, err := d.waitPing(ctx)
	if err != nil {
		return err
	}
	rep.add("restart: exec to /ping OK", "%.2f s", ping.Seconds())
	listed, err := waitTopics(ctx, d, cfg.Topics, false, restoreTimeout)
	if err != nil {
		return err
	}
	rep.add("restart: exec to /stats listing every topic and channel", "%.2f s", listed.Seconds())
	restored, err := waitTopics(ctx, d, cfg.Topics, true, restoreTimeout)
	if err != nil {
		return err
	}
	rep.add("restart: exec to /stats showing every message", "%.2f s", restored.Seconds())
	logger.Info("restarted", "ping", ping, "listed", listed, "restored", restored)

	after, cpu, err := d.quiet(ctx, cfg.Settle)
	if err != nil {
		return err
	}
	rep.add("RSS after the restart", "%s", mib(after))
	rep.add("CPU while idle after the restart", "%.0f%% of a core", cpu*100)
	if files, err := d.openFiles(); err == nil {
		rep.add("open files after the restart", "%d", files)
	}
	if err := reportEndpoints(ctx, d, cfg.Repeat, "after the restart: ", rep); err != nil {
		return err
	}
	if cfg.ProfileDir != "" {
		// The requests again, under a CPU profile.
		wait := d.cpuProfile(ctx, cfg.ProfileDir, "topics-endpoints.cpu", 10*time.Second)
		for end := time.Now().Add(9 * time.Second); time.Now().Before(end); {
			if err := reportEndpoints(ctx, d, 1, "", &section{}); err != nil {
				return err
			}
		}
		wait()
		d.profile(ctx, cfg.ProfileDir, "topics.heap", "heap")
	}
	return nil
}

// createTopics creates every topic with its two channels over HTTP, createWorkers at a time.
func createTopics(ctx context.Context, d *daemon, names []string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range createWorkers {
		wg.Go(func() {
			for name := range jobs {
				if err := createTopic(ctx, d, name, topicChannelA, topicChannelB); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, name := range names {
		select {
		case jobs <- name:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return context.Cause(ctx)
}

// publishOneEach publishes one message to every topic on one connection, pipelined, and
// waits for every OK.
func publishOneEach(ctx context.Context, addr string, names []string, hb time.Duration) error {
	c, err := dial(ctx, addr, nil, hb, "nsqscale")
	if err != nil {
		return err
	}
	defer func() { _ = c.close() }()
	acked := make(chan error, 1)
	go func() {
		for range names {
			ft, data, err := c.readHandshake()
			if err != nil {
				acked <- fmt.Errorf("PUB: %w", err)
				return
			}
			if ft != protocol.FrameTypeResponse || string(data) != protocol.OK {
				acked <- fmt.Errorf("PUB: %s frame %q", ft, data)
				return
			}
		}
		acked <- nil
	}()
	body := make([]byte, connBodySize)
	const batch = 200
	for i := 0; i < len(names); i += batch {
		cmds := make([]*protocol.Command, 0, batch)
		for j := i; j < min(i+batch, len(names)); j++ {
			stampBody(body, uint64(j), time.Now())
			cmds = append(cmds, protocol.Publish(names[j], body))
		}
		if err := c.send(cmds...); err != nil {
			return err
		}
	}
	return <-acked
}

// waitTopics polls /stats until it lists n topics with two channels each (and, with
// messages, one message in every channel) and returns the time since the daemon's exec at
// the request that showed it.
func waitTopics(ctx context.Context, d *daemon, n int, messages bool, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		asked := time.Since(d.started)
		s, err := d.stats(ctx, "")
		topics, channels, depth := 0, 0, int64(0)
		if err == nil {
			topics = len(s.Topics)
			for _, t := range s.Topics {
				channels += len(t.Channels)
				for _, c := range t.Channels {
					depth += c.Depth
				}
			}
			if topics == n && channels == 2*n && (!messages || depth == int64(2*n)) {
				return asked, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("after %v /stats lists %d topics, %d channels, %d messages; want %d, %d, %d (last error: %v)",
				timeout, topics, channels, depth, n, 2*n, 2*n, err)
		}
		select {
		case <-d.exited:
			return 0, fmt.Errorf("nsqd exited (%v); its output:\n%s", d.waitErr, d.tail())
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// reportEndpoints times /stats?format=json (clients included, as nsqadmin asks) and
// /metrics repeat times each and adds the medians of the response time and of the daemon's
// CPU time per request (which the other processes on the machine disturb less), and the
// response sizes; /metrics is left out when the daemon has none (404), as NSQ's has not.
func reportEndpoints(ctx context.Context, d *daemon, repeat int, prefix string, rep *section) error {
	for _, path := range []string{"/stats?format=json", "/metrics"} {
		var times, cpus []time.Duration
		size := 0
		for range repeat {
			cpu0, err := d.cpuTime()
			if err != nil {
				return err
			}
			body, status, elapsed, err := d.get(ctx, path)
			if err != nil {
				return err
			}
			cpu1, err := d.cpuTime()
			if err != nil {
				return err
			}
			if status == http.StatusNotFound && path == "/metrics" {
				rep.add(prefix+"GET "+path, "404 (none)")
				break
			}
			if status != http.StatusOK {
				return fmt.Errorf("GET %s: %d", path, status)
			}
			times, cpus = append(times, elapsed), append(cpus, cpu1-cpu0)
			size = len(body)
		}
		if len(times) > 0 {
			rep.add(prefix+"GET "+path, "%s, daemon CPU %s (medians of %d), %s",
				ms(median(times)), ms(median(cpus)), len(times), mib(int64(size)))
		}
	}
	return nil
}
