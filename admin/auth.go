package admin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/httpapi"
)

// Login (--user) is Tern's: NSQ's admin has none and trusts a proxy's header. With users
// configured every page and endpoint needs a session but /ping, /static/*, /login and
// /logout. A session is a cookie signed with HMAC-SHA256 over the user, its expiry and a
// digest of the user's password hash; the server keeps no session state, so the key
// (--session-key-file, or random per process) is the only secret. A session is revoked by
// changing the user's hash (a new password, or the same one hashed again: a new salt), or
// every session at once by changing the key; logging out only clears the browser's cookie. The JSON API and /metrics also take HTTP Basic credentials, for scripts
// and scrapers.

const (
	sessionCookie = "tern_admin_session"
	sessionTTL    = 12 * time.Hour
	// minSessionKey is the shortest --session-key-file: an HMAC-SHA256 key of full strength.
	minSessionKey = 32
	// codeAuthRequired is the API's answer without credentials.
	codeAuthRequired = "AUTH_REQUIRED"

	// loginFailLimit attempts at one user name from one address within loginFailWindow
	// refuse its further attempts at that name until the window ends, without checking them:
	// a brute force gets loginFailLimit guesses a minute at a user, and each costs it a
	// PBKDF2 anyway. Keyed by the name too, so that behind a proxy (one address for
	// everyone) a guesser locks out only the name he guesses at, not every user.
	loginFailLimit = 5
	// loginAddrFailLimit attempts from one address within loginFailWindow, at any names,
	// refuse all its further attempts: a guesser spraying names gets no more than this.
	loginAddrFailLimit = 50
	loginFailWindow    = time.Minute
	// maxFailureKeys bounds the windows remembered; past it, expired ones are dropped.
	maxFailureKeys = 10_000
	// maxFailureName bounds the part of a user name a window is keyed by: a long name
	// shares its window with the names it begins like.
	maxFailureName = 128

	// hashSlots bounds the PBKDF2s under way at once, for logins and Basic credentials
	// alike: each costs a CPU a good fraction of a second, and guesses from many addresses,
	// each under its limit, would otherwise take every CPU the admin has. A check waits up
	// to hashWait for a slot, then is refused (503, Retry-After) without being counted.
	hashSlots = 2
	hashWait  = 2 * time.Second
	// codeLoginBusy is the API's answer when no hash slot freed in time.
	codeLoginBusy = "LOGIN_BUSY"

	// basicCacheTTL is how long verified Basic credentials are trusted without another
	// PBKDF2, so that a script polling the API does not cost the admin a hash per request.
	basicCacheTTL = 5 * time.Minute
	maxBasicCache = 1_000
	// maxLoginBody bounds the login form.
	maxLoginBody = 16 << 10
)

// auth checks who a request is from, when users are configured.
type auth struct {
	users  map[string]passwordHash
	stamps map[string][32]byte // user → SHA-256 of its --user hash, signed into its sessions
	dummy  passwordHash        // checked for an unknown name, so that it takes as long as a known one
	key    []byte              // the session key
	secure bool                // the cookie is Secure: the admin or a proxy in front serves HTTPS
	path   string              // the cookie's Path: the base path
	logger *slog.Logger
	now    func() time.Time
	// beforeHash, when not nil, is called as a password is about to be hashed: tests hold
	// logins there to see how many get that far.
	beforeHash func()
	// slots holds a token per PBKDF2 under way (hashSlots); slotWait is how long a check
	// waits for one.
	slots    chan struct{}
	slotWait time.Duration

	failedLogins  atomic.Int64 // logins refused for a wrong name or password
	limitedLogins atomic.Int64 // logins refused unchecked, from an address over the limit

	mu         sync.Mutex               // guards the windows and basicOK; held for no I/O or hashing
	addrFails  map[string]*failWindow   // remote address → its attempts at any name
	loginFails map[loginKey]*failWindow // remote address and user name → its attempts
	basicOK    map[[32]byte]time.Time   // HMAC of verified Basic credentials → when to check again
}

// loginKey is what the per-user limit counts by.
type loginKey struct{ addr, user string }

// failWindow counts the attempts of one key since start: the ones under way and the ones
// that failed. An attempt that succeeds is taken back (attempt.undo).
type failWindow struct {
	start time.Time
	count int
}

// newAuth returns nil without users. Validate has checked the users' format.
//
// The session cookie is Secure when the admin serves HTTPS (servesTLS) or with
// --secure-cookies. Over plain HTTP it warns: passwords and sessions then cross the network in
// clear unless a proxy in front serves HTTPS.
func newAuth(o *Options, servesTLS bool, basePath string, logger *slog.Logger) (*auth, error) {
	if len(o.Users) == 0 {
		return nil, nil
	}
	switch {
	case servesTLS:
	case o.SecureCookies:
		logger.Warn("the admin serves logins over plain HTTP, trusting the proxy in front to serve HTTPS (--secure-cookies): let nothing else reach --http-address",
			"http_address", o.HTTPAddress)
	default:
		logger.Warn("the admin serves logins over plain HTTP: passwords and session cookies cross the network in clear; serve HTTPS with --tls-cert, or behind an HTTPS proxy set --secure-cookies",
			"http_address", o.HTTPAddress)
	}
	au := &auth{
		users: make(map[string]passwordHash), stamps: make(map[string][32]byte), secure: servesTLS || o.SecureCookies, path: basePath, logger: logger,
		now: time.Now, addrFails: make(map[string]*failWindow), loginFails: make(map[loginKey]*failWindow),
		basicOK: make(map[[32]byte]time.Time), slots: make(chan struct{}, hashSlots), slotWait: hashWait,
	}
	if au.path == "" {
		au.path = "/"
	}
	maxIter := minHashIterations
	for _, u := range o.Users {
		name, h, err := parseUser(u)
		if err != nil {
			return nil, fmt.Errorf("--user: %w", err)
		}
		au.users[name] = h
		_, hash, _ := strings.Cut(u, ":")
		au.stamps[name] = sha256.Sum256([]byte(hash))
		maxIter = max(maxIter, h.iterations)
		if h.iterations < hashIterations {
			logger.Warn("a password hash has fewer iterations than recommended; make a new one with nsqadmin --hash-password",
				"user", name, "iterations", h.iterations, "recommended", hashIterations)
		}
	}
	au.dummy = passwordHash{iterations: maxIter, salt: make([]byte, hashSaltBytes), key: make([]byte, hashKeyBytes)}
	if o.SessionKeyFile != "" {
		key, err := os.ReadFile(o.SessionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--session-key-file: %w", err)
		}
		if len(key) < minSessionKey {
			return nil, fmt.Errorf("--session-key-file %s: %d bytes, want at least %d", o.SessionKeyFile, len(key), minSessionKey)
		}
		au.key = key
	} else {
		au.key = make([]byte, minSessionKey)
		_, _ = rand.Read(au.key)
		logger.Info("sessions are signed with a key made at start: they end when the admin restarts (set --session-key-file to keep them)")
	}
	return au, nil
}

// errLoginBusy is verify's answer when every hash slot stayed taken for slotWait.
var errLoginBusy = errors.New("too many logins being checked")

// verify reports whether name and password are a configured user's, hashing in one of the
// hashSlots: it returns errLoginBusy if none frees within slotWait, or ctx's error if the
// request ends first.
func (au *auth) verify(ctx context.Context, name, password string) (bool, error) {
	select {
	case au.slots <- struct{}{}:
	default:
		t := time.NewTimer(au.slotWait)
		defer t.Stop()
		select {
		case au.slots <- struct{}{}:
		case <-t.C:
			return false, errLoginBusy
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	defer func() { <-au.slots }()
	return au.check(name, password), nil
}

// check reports whether name and password are a configured user's. Call it through verify,
// which bounds the hashes under way.
func (au *auth) check(name, password string) bool {
	if au.beforeHash != nil {
		au.beforeHash()
	}
	h, ok := au.users[name]
	if !ok {
		au.dummy.matches(password)
		return false
	}
	return h.matches(password)
}

// sign is the MAC of a session of user until expiry (Unix seconds). It covers the digest of
// the user's password hash, so that a new hash for the user ends the sessions made before.
func (au *auth) sign(user string, expiry int64) []byte {
	stamp := au.stamps[user]
	m := hmac.New(sha256.New, au.key)
	m.Write([]byte("tern-admin-session\x00" + user + "\x00" + strconv.FormatInt(expiry, 10) + "\x00"))
	m.Write(stamp[:])
	return m.Sum(nil)
}

// sessionValue is the cookie of a new session of user: user, expiry and MAC.
func (au *auth) sessionValue(user string) (string, time.Time) {
	expiry := au.now().Add(sessionTTL).Truncate(time.Second)
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(user)) + "." + strconv.FormatInt(expiry.Unix(), 10) + "." +
		enc.EncodeToString(au.sign(user, expiry.Unix())), expiry
}

// sessionUser returns the user of the request's session cookie, if it is valid: signed with
// the key, not expired, and of a user still configured with the same password hash.
func (au *auth) sessionUser(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return "", false
	}
	enc := base64.RawURLEncoding
	user, err1 := enc.DecodeString(parts[0])
	expiry, err2 := strconv.ParseInt(parts[1], 10, 64)
	mac, err3 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return "", false
	}
	if !hmac.Equal(mac, au.sign(string(user), expiry)) || au.now().Unix() >= expiry {
		return "", false
	}
	if _, ok := au.users[string(user)]; !ok {
		return "", false
	}
	return string(user), true
}

// cookie is the session cookie with value; an empty value and a negative maxAge clear it.
func (au *auth) cookie(value string, expires time.Time, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: sessionCookie, Value: value, Path: au.path, Expires: expires, MaxAge: maxAge,
		HttpOnly: true, Secure: au.secure, SameSite: http.SameSiteLaxMode,
	}
}

// basicID is the key of Basic credentials in basicOK: an HMAC, so that the cache holds no
// password.
func (au *auth) basicID(name, password string) [32]byte {
	m := hmac.New(sha256.New, au.key)
	m.Write([]byte(name + "\x00" + password))
	var id [32]byte
	copy(id[:], m.Sum(nil))
	return id
}

// cachedBasic reports whether Basic credentials were verified in the last basicCacheTTL:
// they are then trusted without another PBKDF2, or a count against the login limits.
func (au *auth) cachedBasic(name, password string) bool {
	id := au.basicID(name, password)
	au.mu.Lock()
	until, ok := au.basicOK[id]
	au.mu.Unlock()
	return ok && au.now().Before(until)
}

// checkBasic verifies Basic credentials and remembers them for basicCacheTTL if they are
// right.
func (au *auth) checkBasic(ctx context.Context, name, password string) (bool, error) {
	if ok, err := au.verify(ctx, name, password); !ok || err != nil {
		return false, err
	}
	au.mu.Lock()
	if len(au.basicOK) >= maxBasicCache {
		clear(au.basicOK)
	}
	au.basicOK[au.basicID(name, password)] = au.now().Add(basicCacheTTL)
	au.mu.Unlock()
	return true, nil
}

// attempt is a login counted against its address's limits before its password is checked,
// so that guesses sent in parallel cannot all pass the limit before the first has failed.
type attempt struct {
	au         *auth
	addr, user *failWindow
}

// begin counts an attempt at user from addr, or reports false, counting nothing, if addr
// or user from addr has used up its attempts of the current window. The attempt stays
// counted, as a failure, unless undo takes it back.
func (au *auth) begin(addr, user string) (attempt, bool) {
	if len(user) > maxFailureName {
		user = user[:maxFailureName]
	}
	now := au.now()
	au.mu.Lock()
	defer au.mu.Unlock()
	if len(au.addrFails)+len(au.loginFails) >= maxFailureKeys {
		for k, f := range au.addrFails {
			if now.Sub(f.start) >= loginFailWindow {
				delete(au.addrFails, k)
			}
		}
		for k, f := range au.loginFails {
			if now.Sub(f.start) >= loginFailWindow {
				delete(au.loginFails, k)
			}
		}
	}
	a := windowOf(au.addrFails, addr, now)
	u := windowOf(au.loginFails, loginKey{addr, user}, now)
	if a.count >= loginAddrFailLimit || u.count >= loginFailLimit {
		return attempt{}, false
	}
	a.count++
	u.count++
	return attempt{au: au, addr: a, user: u}, true
}

// windowOf returns the current window of key in m, starting a new one if its last has
// ended.
func windowOf[K comparable](m map[K]*failWindow, key K, now time.Time) *failWindow {
	f := m[key]
	if f == nil || now.Sub(f.start) >= loginFailWindow {
		f = &failWindow{start: now}
		m[key] = f
	}
	return f
}

// undo takes back an attempt that succeeded, or that was never checked: only failures
// count. It takes back only this attempt: a success does not clear the failures before it,
// or a guesser would clear his own by logging in as himself between guesses at another user.
func (at attempt) undo() {
	at.au.mu.Lock()
	defer at.au.mu.Unlock()
	for _, f := range []*failWindow{at.addr, at.user} {
		if f.count > 0 {
			f.count--
		}
	}
}

// remoteHost is the address a request comes from, without the port. Behind a proxy it is
// the proxy's.
func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

type userKey struct{}

// withUser records the logged-in user in the request's context.
func withUser(r *http.Request, user string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), userKey{}, user))
}

// user is who the request is from: the logged-in user with --user, otherwise the name the
// --acl-http-header header carries (or "").
func (a *Admin) user(r *http.Request) string {
	if a.auth != nil {
		u, _ := r.Context().Value(userKey{}).(string)
		return u
	}
	if h := a.getOpts().ACLHTTPHeader; h != "" {
		return r.Header.Get(h)
	}
	return ""
}

// requireLogin lets through requests with a session, requests to the API with a user's
// Basic credentials, and the paths anyone may reach; it sends other page requests to the
// login form and answers other API requests 401.
func (a *Admin) requireLogin(next http.Handler) http.Handler {
	au := a.auth
	if au == nil {
		return next
	}
	bp := a.pages.base
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		static, isStatic := strings.CutPrefix(p, bp("/static/"))
		if p == bp("/ping") || p == bp("/login") || p == bp("/logout") || (isStatic && !strings.Contains(static, "/")) {
			next.ServeHTTP(w, r)
			return
		}
		if user, ok := au.sessionUser(r); ok {
			next.ServeHTTP(w, withUser(r, user))
			return
		}
		if !strings.HasPrefix(p, bp("/api/")) && !strings.HasPrefix(p, bp("/config/")) && p != bp("/metrics") {
			http.Redirect(w, r, bp("/login")+"?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
			return
		}
		if name, password, ok := r.BasicAuth(); ok {
			if au.cachedBasic(name, password) {
				next.ServeHTTP(w, withUser(r, name))
				return
			}
			addr := remoteHost(r)
			at, ok := au.begin(addr, name)
			if !ok {
				au.limitedLogins.Add(1)
				httpapi.RespondError(w, httpapi.NewError(http.StatusTooManyRequests, "TOO_MANY_FAILED_LOGINS"))
				return
			}
			ok, err := au.checkBasic(r.Context(), name, password)
			if err != nil {
				at.undo()
				w.Header().Set("Retry-After", "1")
				httpapi.RespondError(w, httpapi.NewError(http.StatusServiceUnavailable, codeLoginBusy))
				return
			}
			if ok {
				at.undo()
				next.ServeHTTP(w, withUser(r, name))
				return
			}
			au.failedLogins.Add(1)
			au.logger.Warn("failed login", "user", name, "remote_addr", addr, "via", "basic")
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="nsqadmin", charset="UTF-8"`)
		httpapi.RespondError(w, httpapi.NewError(http.StatusUnauthorized, codeAuthRequired))
	})
}

// localNext returns next if it is a path of the admin's own, else the admin's root: after
// logging in, the browser goes only where the admin sends it (no open redirect through
// "//evil.example" or "https://evil.example").
func (a *Admin) localNext(next string) string {
	home := a.pages.base("/")
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return home
	}
	if a.basePath != "" && u.Path != a.basePath && !strings.HasPrefix(u.Path, a.basePath+"/") {
		return home
	}
	return next
}

// loginBody is login.html.
type loginBody struct {
	Next, User, Error string
}

// loginForm answers GET /login.
func (p *pages) loginForm(w http.ResponseWriter, r *http.Request) {
	p.renderLogin(w, r, http.StatusOK, loginBody{Next: p.a.localNext(r.URL.Query().Get("next"))})
}

func (p *pages) renderLogin(w http.ResponseWriter, r *http.Request, status int, body loginBody) {
	d := p.newPageData(r, "Log in", "login")
	d.Body = body
	p.render(w, status, "login", d)
}

// login answers POST /login: a session and a 303 to the page asked for, or the form again
// with a 401.
func (p *pages) login(w http.ResponseWriter, r *http.Request) {
	au := p.a.auth
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, httpapi.NewError(http.StatusBadRequest, "The form could not be read."))
		return
	}
	name, password := r.PostForm.Get("user"), r.PostForm.Get("password")
	body := loginBody{Next: p.a.localNext(r.PostForm.Get("next")), User: name}
	addr := remoteHost(r)
	at, ok := au.begin(addr, name)
	if !ok {
		au.limitedLogins.Add(1)
		p.a.logger.Warn("login refused: too many failures from the address", "user", name, "remote_addr", addr)
		body.Error = "Too many failed logins. Wait a minute and try again."
		p.renderLogin(w, r, http.StatusTooManyRequests, body)
		return
	}
	ok, err := au.verify(r.Context(), name, password)
	if err != nil {
		at.undo()
		p.a.logger.Warn("login refused: too many logins being checked", "user", name, "remote_addr", addr)
		body.Error = "The admin is busy checking other logins. Try again in a moment."
		w.Header().Set("Retry-After", "1")
		p.renderLogin(w, r, http.StatusServiceUnavailable, body)
		return
	}
	if !ok {
		au.failedLogins.Add(1)
		p.a.logger.Warn("failed login", "user", name, "remote_addr", addr, "via", "form")
		body.Error = "Wrong user name or password."
		p.renderLogin(w, r, http.StatusUnauthorized, body)
		return
	}
	at.undo()
	value, expires := au.sessionValue(name)
	http.SetCookie(w, au.cookie(value, expires, int(sessionTTL/time.Second)))
	p.a.logger.Info("login", "user", name, "remote_addr", addr)
	http.Redirect(w, r, body.Next, http.StatusSeeOther)
}

// logout answers POST /logout: the cookie is cleared and the browser sent to the login form.
// The signed value itself stays valid until it expires, the user's hash changes or the key
// does: the server keeps no sessions.
func (p *pages) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, p.a.auth.cookie("", time.Unix(0, 0), -1))
	http.Redirect(w, r, p.base("/login"), http.StatusSeeOther)
}
