package toolflag

import (
	"net"
	"net/http"
	"time"
)

// HTTPClient returns the client of a tool's --http-client-connect-timeout and
// --http-client-request-timeout: connections are dialled within connect, and a request,
// body included, takes at most request.
func HTTPClient(connect, request time.Duration) *http.Client {
	return &http.Client{
		Timeout: request,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: request,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   64,
		},
	}
}
