//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ternmq/tern/internal/browsertest"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
)

// project is the compose project name of the test's cluster: its containers, network and
// volumes are named tern-e2e_*.
const project = "tern-e2e"

// daemons are the services with a healthcheck.
var daemons = []string{"nsqlookupd1", "nsqlookupd2", "nsqd1", "nsqd2", "nsqadmin"}

// portVars are the compose file's port variables; the test gives each a free port.
var portVars = []string{
	"TERN_NSQD1_TCP_PORT", "TERN_NSQD1_HTTP_PORT", "TERN_NSQD2_TCP_PORT", "TERN_NSQD2_HTTP_PORT",
	"TERN_LOOKUPD1_TCP_PORT", "TERN_LOOKUPD1_HTTP_PORT", "TERN_LOOKUPD2_TCP_PORT", "TERN_LOOKUPD2_HTTP_PORT",
	"TERN_ADMIN_HTTP_PORT",
}

// cluster is the compose cluster under test.
type cluster struct {
	t       *testing.T
	compose []string // "docker compose" or "docker-compose"
	dir     string   // the repository, where docker-compose.yml is
	env     []string
	ports   map[string]int
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Fatalf("no Docker engine answers (docker info: %v); make e2e skips this test then", err)
	}
	c := &cluster{t: t, ports: make(map[string]int)}
	if exec.Command("docker", "compose", "version").Run() == nil {
		c.compose = []string{"docker", "compose"}
	} else {
		c.compose = []string{"docker-compose"}
	}
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	if _, err := os.Stat(filepath.Join(dir, "bin", "nsqd")); err != nil {
		t.Fatalf("the image is built from ./bin: run make build first (make e2e does): %v", err)
	}
	c.env = os.Environ()
	for i, addr := range testutil.FreeAddresses(t, len(portVars)) {
		_, port, _ := net.SplitHostPort(addr)
		c.ports[portVars[i]], _ = strconv.Atoi(port)
		c.env = append(c.env, portVars[i]+"="+port)
	}
	return c
}

// addr is 127.0.0.1 and the port of the variable v: the daemon as the host reaches it.
func (c *cluster) addr(v string) string { return "127.0.0.1:" + strconv.Itoa(c.ports[v]) }

// run runs the compose tool on the test's project and returns its combined output.
func (c *cluster) run(args ...string) (string, error) {
	cmdArgs := append(append(append([]string{}, c.compose[1:]...), "-p", project, "--profile", "examples"), args...)
	cmd := exec.Command(c.compose[0], cmdArgs...)
	cmd.Dir = c.dir
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", strings.Join(c.compose, " "), strings.Join(cmdArgs, " "), err, out)
	}
	return string(out), nil
}

func (c *cluster) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// health is the healthcheck status of a service's container, or what kept it from having one.
func (c *cluster) health(service string) string {
	id, err := c.run("ps", "-q", service)
	if err != nil || strings.TrimSpace(id) == "" {
		return "no container"
	}
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Health.Status}}", strings.TrimSpace(id)).Output()
	if err != nil {
		return "inspect failed: " + err.Error()
	}
	return strings.TrimSpace(string(out))
}

// waitHealthy waits until every service given has passed its healthcheck.
func (c *cluster) waitHealthy(services ...string) {
	c.t.Helper()
	var status []string
	poll(c.t, 2*time.Minute, func() bool {
		status = status[:0]
		for _, s := range services {
			if h := c.health(s); h != "healthy" {
				status = append(status, s+": "+h)
			}
		}
		return len(status) == 0
	}, func() string {
		logs, _ := c.run("logs", "--tail=20")
		return fmt.Sprintf("not healthy: %v\n%s", status, logs)
	})
}

// leftovers lists what Docker still has of the project: containers, networks, volumes.
func leftovers(t *testing.T) []string {
	t.Helper()
	var found []string
	label := "label=com.docker.compose.project=" + project
	for _, kind := range [][]string{
		{"ps", "-a", "--filter", label, "--format", "container {{.Names}}"},
		{"network", "ls", "--filter", label, "--format", "network {{.Name}}"},
		{"volume", "ls", "--filter", label, "--format", "volume {{.Name}}"},
	} {
		out, err := exec.Command("docker", kind...).Output()
		if err != nil {
			t.Fatalf("docker %s: %v", strings.Join(kind, " "), err)
		}
		found = append(found, strings.Fields(strings.ReplaceAll(string(out), "\n", " "))...)
	}
	return found
}

// poll checks cond every half second until it holds, failing the test with what explain says
// if it does not within timeout.
func poll(t *testing.T, timeout time.Duration, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, explain())
		}
		time.Sleep(500 * time.Millisecond) // polling interval, not synchronisation: cond is re-checked
	}
}

// publish POSTs bodies to topic over nsqd's HTTP API at addr, as a user does with curl.
func publish(t *testing.T, addr, topic string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		resp, err := http.Post("http://"+addr+"/pub?topic="+topic, "text/plain", strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("publish to %s on %s: %s %s", topic, addr, resp.Status, msg)
		}
	}
}

// post POSTs to nsqd's HTTP API at addr, failing on anything but 200.
func post(t *testing.T, addr, path string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s on %s: %s %s", path, addr, resp.Status, msg)
	}
}

// bodies returns n message bodies named prefix-1 ... prefix-n.
func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return out
}

// receiver counts what a consumer receives, body by body.
type receiver struct {
	mu    sync.Mutex
	got   map[string]int
	nsqds map[string]int
}

func (r *receiver) HandleMessage(m *nsq.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[string(m.Body)]++
	r.nsqds[m.NSQDAddress]++
	return nil
}

// missing lists the bodies not received yet; duplicates those received more than once.
func (r *receiver) missing(want []string) (missing, duplicates []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range want {
		if r.got[b] == 0 {
			missing = append(missing, b)
		}
	}
	for b, n := range r.got {
		if n > 1 {
			duplicates = append(duplicates, fmt.Sprintf("%s×%d", b, n))
		}
	}
	return missing, duplicates
}

// consume starts a consumer on the host that finds the nsqds through both lookupds, named
// localhost as a user names them.
func (c *cluster) consume(topic, channel string) (*receiver, *nsq.Consumer) {
	c.t.Helper()
	r := &receiver{got: make(map[string]int), nsqds: make(map[string]int)}
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 50
	cfg.LookupdPollInterval = time.Second
	consumer, err := nsq.NewConsumer(topic, channel, r, cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, v := range []string{"TERN_LOOKUPD1_HTTP_PORT", "TERN_LOOKUPD2_HTTP_PORT"} {
		if err := consumer.ConnectToNSQLookupd("localhost:" + strconv.Itoa(c.ports[v])); err != nil {
			c.t.Fatal(err)
		}
	}
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = consumer.Stop(ctx)
	})
	return r, consumer
}

// waitReceived waits until r has every body of want, and fails if any came twice.
func waitReceived(t *testing.T, r *receiver, want []string, what string) {
	t.Helper()
	var missing, dups []string
	poll(t, time.Minute, func() bool {
		missing, dups = r.missing(want)
		return len(missing) == 0
	}, func() string {
		return fmt.Sprintf("%s: %d of %d missing, e.g. %v", what, len(missing), len(want), first(missing, 5))
	})
	if len(dups) > 0 {
		t.Errorf("%s: received more than once: %v", what, first(dups, 10))
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// TestCompose runs the whole first-run journey on the Docker engine.
func TestCompose(t *testing.T) {
	c := newCluster(t)
	start := time.Now()
	step := func(name string) { t.Logf("%6.1fs  %s", time.Since(start).Seconds(), name) }

	// 1. Up from a clean state; every container healthy.
	step("compose down -v: a clean state")
	c.must("down", "--volumes", "--remove-orphans")
	t.Cleanup(func() {
		if os.Getenv("TERN_E2E_KEEP") != "" {
			t.Logf("TERN_E2E_KEEP is set: the cluster %s keeps running", project)
			return
		}
		if _, err := c.run("down", "--volumes", "--remove-orphans"); err != nil {
			t.Error(err)
		}
	})
	step("build the image and start the cluster")
	// Every daemon runs the one image tern:dev: building it for nsqd1 builds it for all.
	c.must("build", "--quiet", "net", "nsqd1")
	c.must("up", "-d", "net", "nsqlookupd1", "nsqlookupd2", "nsqd1", "nsqd2", "nsqadmin")
	c.waitHealthy(daemons...)
	step("every daemon is healthy")

	nsqd1, nsqd2 := c.addr("TERN_NSQD1_HTTP_PORT"), c.addr("TERN_NSQD2_HTTP_PORT")
	nsqd1TCP, nsqd2TCP := c.addr("TERN_NSQD1_TCP_PORT"), c.addr("TERN_NSQD2_TCP_PORT")
	admin := "http://" + c.addr("TERN_ADMIN_HTTP_PORT")

	// 2. Publish over HTTP to each nsqd from the host; a consumer on the host, through the
	// lookupds, receives every message exactly once, from both nsqds.
	first1, first2 := bodies("one", 200), bodies("two", 200)
	publish(t, nsqd1, "e2e", first1...)
	publish(t, nsqd2, "e2e", first2...)
	step("published 200 messages to each nsqd over HTTP")
	r, _ := c.consume("e2e", "host")
	waitReceived(t, r, append(append([]string{}, first1...), first2...), "the host's consumer")
	r.mu.Lock()
	from := fmt.Sprint(r.nsqds)
	bothNodes := r.nsqds[nsqd1TCP] == len(first1) && r.nsqds[nsqd2TCP] == len(first2)
	r.mu.Unlock()
	if !bothNodes {
		t.Errorf("the consumer received %v by nsqd, want %d from %s and %d from %s", from, len(first1), nsqd1TCP, len(first2), nsqd2TCP)
	}
	step("the host's consumer received all 400, once each, from both nsqds")

	// Messages that wait in nsqd2 for a consumer, to be there across its restart.
	post(t, nsqd2, "/topic/create?topic=held")
	post(t, nsqd2, "/channel/create?topic=held&channel=later")
	held := bodies("held", 25)
	publish(t, nsqd2, "held", held...)

	// 3. The admin, in its container, reaches both nsqds: headless Chromium sees both nodes and
	// the held topic's depth.
	b := browsertest.New(t)
	b.Do("open the nodes page", chromedp.Navigate(admin+"/nodes"), browsertest.Visible("#nodes table"))
	for _, addr := range []string{nsqd1, nsqd2} {
		if nodes := b.Text("#nodes"); !strings.Contains(nodes, addr) {
			t.Errorf("the admin's nodes page does not list %s:\n%s", addr, nodes)
		}
	}
	b.Shot("e2e-nodes")
	b.Do("open the topic", chromedp.Navigate(admin+"/topics/held"), browsertest.Visible("#summary"))
	b.Eventually("#summary .card:nth-child(1) .value", func(s string) bool { return s == strconv.Itoa(len(held)) },
		fmt.Sprintf("the admin shows topic held's depth as %d", len(held)))
	b.Shot("e2e-topic-held")
	step("the admin shows both nodes and the topic's depth")

	// 4. Stop nsqd2: the consumer goes on with nsqd1, and the admin warns that nsqd2 is gone.
	c.must("stop", "nsqd2")
	step("nsqd2 stopped")
	during := bodies("during", 100)
	publish(t, nsqd1, "e2e", during...)
	waitReceived(t, r, during, "the consumer, with nsqd2 stopped")
	step("the consumer received what nsqd1 got meanwhile")
	b.Do("open the overview", chromedp.Navigate(admin+"/"), browsertest.Visible("#topics"))
	b.Eventually("body", func(s string) bool {
		return strings.Contains(s, "nsqd "+nsqd2+": no longer registered with any nsqlookupd")
	}, "the admin warns that nsqd2 is gone")
	b.Shot("e2e-nsqd2-gone")
	step("the admin warns that nsqd2 is gone")

	// Start it again: the messages it held are delivered.
	c.must("start", "nsqd2")
	c.waitHealthy("nsqd2")
	step("nsqd2 started again")
	later, _ := c.consume("held", "later")
	waitReceived(t, later, held, "the consumer of the messages nsqd2 held")
	after := bodies("after", 100)
	publish(t, nsqd2, "e2e", after...)
	waitReceived(t, r, after, "the first consumer, back on nsqd2")
	if _, dups := r.missing(nil); len(dups) > 0 {
		t.Errorf("the first consumer received messages more than once: %v", first(dups, 10))
	}
	step("nsqd2's held messages were delivered, and the first consumer is back on it")

	// 5. Down leaves no container, network or volume behind. The browser leaves the admin
	// first, whose page would otherwise report the refused refreshes.
	b.Do("leave the admin", chromedp.Navigate("about:blank"))
	c.must("down", "--volumes", "--remove-orphans")
	if left := leftovers(t); len(left) > 0 {
		t.Errorf("compose down left behind: %v", left)
	}
	// The images this test's build replaced (make up removes them the same way).
	if out, err := exec.Command("docker", "image", "prune", "--force", "--filter", "label=org.ternmq.image").CombinedOutput(); err != nil {
		t.Errorf("docker image prune: %v\n%s", err, out)
	}
	step("compose down -v left nothing behind")
}
