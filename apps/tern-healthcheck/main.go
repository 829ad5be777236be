// Command tern-healthcheck is the container healthcheck of Tern's image: it GETs each URL it is
// given and exits 0 when every one answers 200 within --timeout, or 1, naming the first that
// did not. The image is built FROM scratch, with no shell or curl, so docker's healthcheck
// runs this instead:
//
//	tern-healthcheck http://127.0.0.1:4151/ping
//
// nsqd answers /ping with 500 while it is unhealthy (a full disk, for one), so the check
// fails then too, not only when nothing listens.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("tern-healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "how long each URL has to answer")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tern-healthcheck [--timeout 2s] URL...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() == 0 || *timeout <= 0 {
		fs.Usage()
		return 1
	}
	client := &http.Client{Timeout: *timeout}
	for _, url := range fs.Args() {
		if err := check(ctx, client, url); err != nil {
			fmt.Fprintf(stderr, "tern-healthcheck: %v\n", err)
			return 1
		}
	}
	return 0
}

// check GETs url and reports anything but a 200.
func check(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
