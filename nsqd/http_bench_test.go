package nsqd

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkHTTPPub publishes 100-byte messages with POST /pub to a real daemon on loopback,
// over keep-alive connections, one message per request.
func BenchmarkHTTPPub(b *testing.B) {
	body := bytes.Repeat([]byte("p"), 100)
	benchHTTPPublish(b, "/pub?topic=bench_pub", body, 1)
}

// BenchmarkHTTPMPub publishes batches of 100 messages of 100 bytes with POST /mpub (text mode)
// to a real daemon on loopback, over keep-alive connections.
func BenchmarkHTTPMPub(b *testing.B) {
	msg := bytes.Repeat([]byte("m"), 100)
	var body []byte
	for range 100 {
		body = append(append(body, msg...), '\n')
	}
	benchHTTPPublish(b, "/mpub?topic=bench_mpub", body, 100)
}

// benchHTTPPublish posts body to path b.N times from 1 and from 16 concurrent clients and
// reports messages per second; msgs is how many messages one request carries.
func benchHTTPPublish(b *testing.B, path string, body []byte, msgs int) {
	for _, conns := range []int{1, 16} {
		b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
			// Logging every request would measure the logger.
			d := startHTTPDaemon(b, func(o *Options) { o.LogLevel = "error" })
			url := d.base + path
			post := func() error {
				res, err := d.client.Post(url, "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					return fmt.Errorf("status %d", res.StatusCode)
				}
				return nil
			}
			if err := post(); err != nil { // create the topic and open a connection first
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range conns {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if err := post(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N*msgs)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
