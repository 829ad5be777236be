package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/julienschmidt/httprouter"

	"github.com/ternmq/tern/internal/cmdline"
	"github.com/ternmq/tern/internal/logging"
)

// /config/:opt error codes, NSQ's.
const (
	codeInvalidOption     = "INVALID_OPTION"
	codeInvalidValue      = "INVALID_VALUE"
	codeInvalidRemoteAddr = "INVALID_REMOTE_ADDR"
)

// maxConfigValue bounds a PUT /config value, as NSQ's admin does.
const maxConfigValue = 1 << 20

// configAllowed checks the request comes from --allow-config-from-cidr.
func (a *Admin) configAllowed(r *http.Request) error {
	cidr := a.getOpts().AllowConfigFromCIDR
	if cidr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return apiErr(http.StatusBadRequest, codeInvalidRemoteAddr)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return apiErr(http.StatusBadRequest, codeInvalidRemoteAddr)
	}
	prefix, err := netip.ParsePrefix(cidr) // Validate checked it
	if err != nil || !prefix.Contains(ip.Unmap()) {
		return apiErr(http.StatusForbidden, codeForbidden)
	}
	return nil
}

// secretOptions are the options GET /config never serves, to anyone: they carry a secret
// (the users' password hashes), say where one is kept (the session key, the private keys), or
// may embed one (a notification URL with a token or user:password in it). NSQ's admin serves
// every option; these are Tern's or carry more than NSQ's did. They answer as an unknown
// option does, so that asking does not even confirm they are set.
var secretOptions = map[string]bool{
	"users":                      true,
	"session_key_file":           true,
	"tls_key":                    true,
	"http_client_tls_key":        true,
	"notification_http_endpoint": true,
}

// GET /config/:opt: an option by its TOML key, but for secretOptions. With --admin-user it
// is for the admin users only, as PUT is: behind a proxy on the same host every request comes
// from 127.0.0.1, inside --allow-config-from-cidr, so the CIDR alone does not say who asks.
func (a *Admin) getConfig(_ http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if err := a.configAllowed(r); err != nil {
		return nil, err
	}
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	opt := ps.ByName("opt")
	if secretOptions[opt] {
		return nil, apiErr(http.StatusBadRequest, codeInvalidOption)
	}
	v, ok := cmdline.ValueByKey(a.getOpts(), opt)
	if !ok {
		return nil, apiErr(http.StatusBadRequest, codeInvalidOption)
	}
	return v, nil
}

// PUT /config/:opt for the two options NSQ's admin changes at run time:
// nsqlookupd_http_addresses (a JSON array of host:port) and log_level (the bare level name).
// It answers the new value as GET would.
func (a *Admin) putConfig(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if err := a.configAllowed(r); err != nil {
		return nil, err
	}
	// Changing the lookupds changes where every request and action goes: an admin's
	// decision, as the actions are (NSQ checks only the source address).
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxConfigValue))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, apiErr(http.StatusRequestEntityTooLarge, codeInvalidValue)
		}
		return nil, err
	}
	if len(body) == 0 {
		return nil, apiErr(http.StatusRequestEntityTooLarge, codeInvalidValue)
	}
	opt := ps.ByName("opt")
	a.configMu.Lock()
	defer a.configMu.Unlock()
	o := *a.getOpts()
	switch opt {
	case "nsqlookupd_http_addresses":
		var addrs []string
		if err := json.Unmarshal(body, &addrs); err != nil {
			return nil, apiErr(http.StatusBadRequest, codeInvalidValue)
		}
		for _, addr := range addrs {
			if checkHostPort(strings.TrimPrefix(addr, "https://")) != nil {
				return nil, apiErr(http.StatusBadRequest, codeInvalidValue)
			}
		}
		// The admin needs some way to find the cluster: emptying the lookupds of an admin
		// that has no nsqd list would leave it blind.
		if len(addrs) == 0 && len(o.NSQDHTTPAddresses) == 0 {
			return nil, apiErr(http.StatusBadRequest, codeInvalidValue)
		}
		if len(addrs) > 0 && len(o.NSQDHTTPAddresses) > 0 {
			return nil, apiErr(http.StatusBadRequest, codeInvalidValue)
		}
		o.NSQLookupdHTTPAddresses = addrs
		a.opts.Store(&o)
		a.cluster.departed.reset()
		a.cache.invalidate()
		a.logger.Info("nsqlookupd_http_addresses changed", "addresses", addrs)
	case "log_level":
		name := strings.ToLower(strings.TrimSpace(string(body)))
		level, err := logging.ParseLevel(name)
		if err != nil {
			return nil, apiErr(http.StatusBadRequest, codeInvalidValue)
		}
		o.LogLevel = name
		a.opts.Store(&o)
		a.level.Set(level)
		a.logger.Info("log_level changed", "log_level", name)
	default:
		return nil, apiErr(http.StatusBadRequest, codeInvalidOption)
	}
	v, _ := cmdline.ValueByKey(a.getOpts(), opt)
	return v, nil
}
