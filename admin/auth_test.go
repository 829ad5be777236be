package admin

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
)

// testUsers are alice (an admin) and bob, with hashes cheap enough for tests.
func testUsers(t *testing.T) []string {
	t.Helper()
	var users []string
	for _, u := range []string{"alice", "bob"} {
		h, err := hashPassword(u+"-pw", minHashIterations)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u+":"+h)
	}
	return users
}

// startLoginAdmin runs an admin with the test users; alice is its admin user.
func startLoginAdmin(t *testing.T, configure func(*Options)) *Admin {
	t.Helper()
	users := testUsers(t)
	return startLoneAdmin(t, func(o *Options) {
		o.Users, o.ACLHTTPHeader, o.AdminUsers = users, "", []string{"alice"}
		if configure != nil {
			configure(o)
		}
	})
}

type answer struct {
	code   int
	header http.Header
	body   string
	resp   *http.Response
}

// send makes one request, not following redirects. form, when not nil, is posted; header
// is pairs of names and values; cookie, when not nil, is sent.
func send(t *testing.T, client *http.Client, method, u string, form url.Values, cookie *http.Cookie, header ...string) answer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if client == nil {
		client = noRedirect
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b), resp}
}

// sessionCookieOf returns the session cookie an answer sets, or nil.
func sessionCookieOf(a answer) *http.Cookie {
	for _, c := range a.resp.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// login logs user in and returns the session cookie.
func login(t *testing.T, a *Admin, user string) *http.Cookie {
	t.Helper()
	ans := send(t, nil, "POST", adminURL(a, "/login"), url.Values{"user": {user}, "password": {user + "-pw"}}, nil)
	c := sessionCookieOf(ans)
	if ans.code != http.StatusSeeOther || c == nil {
		t.Fatalf("login of %s: %d, cookie %v\n%s", user, ans.code, c, ans.body)
	}
	return c
}

func TestLoginRequired(t *testing.T) {
	a := startLoginAdmin(t, nil)
	tests := []struct {
		path     string
		code     int
		location string
	}{
		{"/", 303, "/login?next=%2F"},
		{"/topics/orders?x=1", 303, "/login?next=%2Ftopics%2Forders%3Fx%3D1"},
		{"/nodes", 303, "/login?next=%2Fnodes"},
		{"/no/such/page", 303, "/login?next=%2Fno%2Fsuch%2Fpage"},
		{"/static/../api/topics", 303, ""},
		{"/ping", 200, ""},
		{"/static/admin.css", 200, ""},
		{"/login", 200, ""},
		{"/api/topics", 401, ""},
		{"/api/nodes", 401, ""},
		{"/config/log_level", 401, ""},
		{"/metrics", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			ans := send(t, nil, "GET", adminURL(a, tt.path), nil, nil)
			if ans.code != tt.code {
				t.Fatalf("status %d, want %d\n%s", ans.code, tt.code, ans.body)
			}
			if tt.location != "" && ans.header.Get("Location") != tt.location {
				t.Errorf("Location %q, want %q", ans.header.Get("Location"), tt.location)
			}
			if tt.code == 401 {
				if ans.body != `{"message":"AUTH_REQUIRED"}` || !strings.HasPrefix(ans.header.Get("WWW-Authenticate"), "Basic ") {
					t.Errorf("401 answer %q, WWW-Authenticate %q", ans.body, ans.header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	// The login form, like any page, keeps to the policy: no inline script.
	ans := send(t, nil, "GET", adminURL(a, "/login?next=/nodes"), nil, nil)
	for _, want := range []string{`<form method="post" action="/login">`, `name="next" value="/nodes"`, `type="password"`, "admin.css"} {
		if !strings.Contains(ans.body, want) {
			t.Errorf("the login page does not contain %q", want)
		}
	}
	if strings.Contains(ans.body, "<script>") || strings.Contains(ans.body, "Log out") {
		t.Error("the login page has an inline script or a logout button")
	}
}

func TestLoginLogout(t *testing.T) {
	a := startLoginAdmin(t, nil)
	ans := send(t, nil, "POST", adminURL(a, "/login"),
		url.Values{"user": {"alice"}, "password": {"alice-pw"}, "next": {"/nodes?x=1"}}, nil)
	if ans.code != 303 || ans.header.Get("Location") != "/nodes?x=1" {
		t.Fatalf("login: %d to %q", ans.code, ans.header.Get("Location"))
	}
	c := sessionCookieOf(ans)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure || c.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, not Secure over HTTP", c)
	}
	if !strings.Contains(ans.header.Get("Set-Cookie"), "SameSite=Lax") {
		t.Errorf("Set-Cookie %q", ans.header.Get("Set-Cookie"))
	}
	if until := time.Until(c.Expires); until < 11*time.Hour || until > 12*time.Hour+time.Minute {
		t.Errorf("the session lasts %v, want 12h", until)
	}
	page := send(t, nil, "GET", adminURL(a, "/nodes"), nil, c)
	if page.code != 200 || !strings.Contains(page.body, `<span class="user">alice</span>`) ||
		!strings.Contains(page.body, `action="/logout"`) {
		t.Fatalf("GET /nodes with a session: %d\n%s", page.code, page.body)
	}

	out := send(t, nil, "POST", adminURL(a, "/logout"), url.Values{}, c)
	cleared := sessionCookieOf(out)
	if out.code != 303 || out.header.Get("Location") != "/login" || cleared == nil || cleared.Value != "" || cleared.MaxAge >= 0 {
		t.Fatalf("logout: %d to %q, cookie %+v", out.code, out.header.Get("Location"), cleared)
	}
}

func TestLoginFailures(t *testing.T) {
	a := startLoginAdmin(t, nil)
	attempts := []url.Values{
		{"user": {"alice"}, "password": {"wrong"}},
		{"user": {"mallory"}, "password": {"alice-pw"}},
		{"user": {""}, "password": {""}},
	}
	for i, form := range attempts {
		ans := send(t, nil, "POST", adminURL(a, "/login"), form, nil)
		if ans.code != 401 || sessionCookieOf(ans) != nil || !strings.Contains(ans.body, "Wrong user name or password") {
			t.Errorf("login %v: %d, cookie %v", form, ans.code, sessionCookieOf(ans))
		}
		if got := a.auth.failedLogins.Load(); got != int64(i+1) {
			t.Errorf("failed logins %d, want %d", got, i+1)
		}
	}
	// More failures at alice reach her limit; then even the right password is refused
	// unchecked, from this address, for alice only.
	for range loginFailLimit - 1 {
		send(t, nil, "POST", adminURL(a, "/login"), attempts[0], nil)
	}
	ans := send(t, nil, "POST", adminURL(a, "/login"), url.Values{"user": {"alice"}, "password": {"alice-pw"}}, nil)
	if ans.code != http.StatusTooManyRequests || sessionCookieOf(ans) != nil {
		t.Errorf("login over the limit: %d", ans.code)
	}
	failed := int64(len(attempts) + loginFailLimit - 1)
	if a.auth.limitedLogins.Load() != 1 || a.auth.failedLogins.Load() != failed {
		t.Errorf("limited %d, failed %d; want 1, %d", a.auth.limitedLogins.Load(), a.auth.failedLogins.Load(), failed)
	}
	api := send(t, nil, "GET", adminURL(a, "/api/nodes"), nil, nil, "Authorization", basic("alice", "alice-pw"))
	if api.code != http.StatusTooManyRequests {
		t.Errorf("Basic over the limit: %d", api.code)
	}
	// Behind a proxy every user has the guesser's address: bob still logs in, and his
	// success gives no guesses at alice back.
	login(t, a, "bob")
	ans = send(t, nil, "POST", adminURL(a, "/login"), url.Values{"user": {"alice"}, "password": {"alice-pw"}}, nil)
	if ans.code != http.StatusTooManyRequests {
		t.Errorf("login as alice after bob's: %d, want still 429", ans.code)
	}
}

// TestLoginFailWindow: the limit is per window, per address and user name, and per address;
// a success takes back only its own attempt.
func TestLoginFailWindow(t *testing.T) {
	now := time.Now()
	au := &auth{now: func() time.Time { return now }, addrFails: map[string]*failWindow{}, loginFails: map[loginKey]*failWindow{}}
	for range loginFailLimit {
		if _, ok := au.begin("10.0.0.1", "alice"); !ok {
			t.Fatal("refused under the limit")
		}
	}
	if _, ok := au.begin("10.0.0.1", "alice"); ok {
		t.Fatal("alice from 10.0.0.1 is let try past the limit")
	}
	// Behind a proxy everyone is 10.0.0.1: bob may still log in, and logging in as bob
	// does not give back guesses at alice.
	bob, ok := au.begin("10.0.0.1", "bob")
	if !ok {
		t.Fatal("bob is locked out by the failures at alice")
	}
	bob.undo()
	if _, ok := au.begin("10.0.0.1", "alice"); ok {
		t.Fatal("a success as bob reset the failures at alice")
	}
	if _, ok := au.begin("10.0.0.2", "alice"); !ok {
		t.Fatal("the limit is not per address")
	}
	now = now.Add(loginFailWindow)
	if _, ok := au.begin("10.0.0.1", "alice"); !ok {
		t.Error("the limit outlasts its window")
	}
	// Spraying names from one address: the address's own limit.
	now = now.Add(loginFailWindow)
	for i := range loginAddrFailLimit {
		if _, ok := au.begin("10.0.0.3", "user"+strconv.Itoa(i)); !ok {
			t.Fatalf("name %d refused under the address's limit", i)
		}
	}
	if _, ok := au.begin("10.0.0.3", "someone-else"); ok {
		t.Error("an address is let try more names than its limit")
	}
}

// TestLoginLimitCountsInFlight: guesses sent in parallel are counted before their password
// is hashed, so that no more than the limit get hashed, however many are sent at once.
func TestLoginLimitCountsInFlight(t *testing.T) {
	a := newTestAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{"127.0.0.1:1"}
		o.Users, o.ACLHTTPHeader = testUsers(t), ""
	})
	const guesses = 4 * loginFailLimit
	a.auth.slots = make(chan struct{}, guesses) // the limit, not the hash slots, is under test
	var hashing atomic.Int64
	release := make(chan struct{})
	a.auth.beforeHash = func() {
		hashing.Add(1)
		<-release
	}
	_, stop := runAdmin(t, a)
	t.Cleanup(stop)
	codes := make(chan int, guesses)
	var answered atomic.Int64
	for range guesses {
		go func() {
			resp, err := noRedirect.PostForm(adminURL(a, "/login"), url.Values{"user": {"alice"}, "password": {"guess"}})
			if err != nil {
				codes <- 0
			} else {
				_ = resp.Body.Close()
				codes <- resp.StatusCode
			}
			answered.Add(1)
		}()
	}
	// Every guess is either answered or held at the hash.
	testutil.Eventually(t, 10*time.Second, func() bool { return answered.Load()+hashing.Load() == guesses },
		"answered %d, hashing %d of %d", answered.Load, hashing.Load)
	close(release)
	refused := 0
	for range guesses {
		switch <-codes {
		case http.StatusTooManyRequests:
			refused++
		case http.StatusUnauthorized:
		default:
			t.Error("a guess was neither refused nor failed")
		}
	}
	if hashing.Load() != loginFailLimit || refused != guesses-loginFailLimit {
		t.Errorf("%d guesses hashed, %d refused; want %d hashed", hashing.Load(), refused, loginFailLimit)
	}
}

func TestSessionCookieRefused(t *testing.T) {
	a := startLoginAdmin(t, nil)
	good := login(t, a, "bob")
	enc := base64.RawURLEncoding
	parts := strings.Split(good.Value, ".")
	expired := time.Now().Add(-time.Minute).Unix()
	tests := map[string]string{
		"another user":  enc.EncodeToString([]byte("alice")) + "." + parts[1] + "." + parts[2],
		"later expiry":  parts[0] + "." + strconv.FormatInt(time.Now().Add(48*time.Hour).Unix(), 10) + "." + parts[2],
		"flipped mac":   parts[0] + "." + parts[1] + "." + enc.EncodeToString(make([]byte, 32)),
		"expired":       parts[0] + "." + strconv.FormatInt(expired, 10) + "." + enc.EncodeToString(a.auth.sign("bob", expired)),
		"unknown user":  enc.EncodeToString([]byte("eve")) + "." + parts[1] + "." + enc.EncodeToString(a.auth.sign("eve", 1<<40)),
		"other key":     parts[0] + "." + parts[1] + "." + enc.EncodeToString((&auth{key: []byte("another key of 32 bytes or more!")}).sign("bob", mustInt(parts[1]))),
		"garbage":       "x",
		"empty":         "",
		"missing parts": parts[0] + "." + parts[1],
	}
	for name, value := range tests {
		t.Run(name, func(t *testing.T) {
			c := &http.Cookie{Name: sessionCookie, Value: value}
			if ans := send(t, nil, "GET", adminURL(a, "/nodes"), nil, c); ans.code != 303 {
				t.Errorf("page: %d, want 303 to the login", ans.code)
			}
			if ans := send(t, nil, "GET", adminURL(a, "/api/nodes"), nil, c); ans.code != 401 {
				t.Errorf("API: %d, want 401", ans.code)
			}
		})
	}
	if ans := send(t, nil, "GET", adminURL(a, "/nodes"), nil, good); ans.code != 200 {
		t.Errorf("the untouched cookie: %d", ans.code)
	}
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// TestBasicAuthAPI: the API takes a user's Basic credentials; pages do not.
func TestBasicAuthAPI(t *testing.T) {
	a := startLoginAdmin(t, nil)
	// The admin's nsqd does not exist: 502 is the API's answer once past the login.
	if ans := send(t, nil, "GET", adminURL(a, "/api/nodes"), nil, nil, "Authorization", basic("bob", "bob-pw")); ans.code == 401 {
		t.Errorf("Basic bob: %d %s", ans.code, ans.body)
	}
	if ans := send(t, nil, "GET", adminURL(a, "/metrics"), nil, nil, "Authorization", basic("bob", "bob-pw")); ans.code != 200 {
		t.Errorf("Basic bob on /metrics: %d", ans.code)
	}
	if ans := send(t, nil, "GET", adminURL(a, "/api/nodes"), nil, nil, "Authorization", basic("bob", "wrong")); ans.code != 401 || ans.body != `{"message":"AUTH_REQUIRED"}` {
		t.Errorf("Basic with a wrong password: %d %s", ans.code, ans.body)
	}
	if a.auth.failedLogins.Load() != 1 {
		t.Errorf("failed logins %d, want 1", a.auth.failedLogins.Load())
	}
	if ans := send(t, nil, "GET", adminURL(a, "/nodes"), nil, nil, "Authorization", basic("bob", "bob-pw")); ans.code != 303 {
		t.Errorf("Basic on a page: %d, want the login form", ans.code)
	}
}

// TestAdminUserIsTheLoggedInUser: --admin-user checks the logged-in user, by session or
// Basic credentials, and the header NSQ's admin trusts is ignored.
func TestAdminUserIsTheLoggedInUser(t *testing.T) {
	a := startLoginAdmin(t, nil)
	alice, bob := login(t, a, "alice"), login(t, a, "bob")
	post := func(cookie *http.Cookie, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", adminURL(a, "/api/topics"), strings.NewReader(`{"topic":"orders"}`))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(bob, "X-Forwarded-User", "alice"); code != 403 {
		t.Errorf("bob creates a topic: %d, want 403", code)
	}
	if code := post(nil, "Authorization", basic("bob", "bob-pw")); code != 403 {
		t.Errorf("bob by Basic creates a topic: %d, want 403", code)
	}
	if code := post(alice); code == 403 || code == 401 {
		t.Errorf("alice creates a topic: %d", code)
	}
	if code := post(nil, "Authorization", basic("alice", "alice-pw")); code == 403 || code == 401 {
		t.Errorf("alice by Basic creates a topic: %d", code)
	}
	// The pages show bob no buttons, and refuse his forms.
	if ans := send(t, nil, "GET", adminURL(a, "/"), nil, bob); strings.Contains(ans.body, `value="create"`) {
		t.Error("bob is shown the create form")
	}
	if ans := send(t, nil, "POST", adminURL(a, "/topics"), url.Values{"action": {"create"}, "topic": {"x"}, "confirmed": {"1"}}, bob); ans.code != 403 {
		t.Errorf("bob's form: %d, want 403", ans.code)
	}
}

func TestLoginNextIsLocal(t *testing.T) {
	a := startLoginAdmin(t, nil)
	based := startLoginAdmin(t, func(o *Options) { o.BasePath = "/nsq" })
	tests := []struct {
		admin      *Admin
		next, want string
	}{
		{a, "/topics/orders", "/topics/orders"},
		{a, "//evil.com", "/"},
		{a, "//evil.com/path", "/"},
		{a, "https://evil.com", "/"},
		{a, "https://evil.com/topics", "/"},
		{a, `/\evil.com`, "/"},
		{a, "javascript:alert(1)", "/"},
		{a, "evil.com", "/"},
		{a, "", "/"},
		{based, "/nsq/nodes", "/nsq/nodes"},
		{based, "/nodes", "/nsq/"},
		{based, "/nsqx", "/nsq/"},
	}
	for _, tt := range tests {
		t.Run(tt.next, func(t *testing.T) {
			ans := send(t, nil, "POST", adminURL(tt.admin, "/login"),
				url.Values{"user": {"bob"}, "password": {"bob-pw"}, "next": {tt.next}}, nil)
			if ans.code != 303 || ans.header.Get("Location") != tt.want {
				t.Errorf("next=%q: %d to %q, want %q", tt.next, ans.code, ans.header.Get("Location"), tt.want)
			}
			form := send(t, nil, "GET", adminURL(tt.admin, "/login?"+url.Values{"next": {tt.next}}.Encode()), nil, nil)
			if !strings.Contains(form.body, `name="next" value="`+tt.want+`"`) {
				t.Errorf("the form for next=%q does not carry %q", tt.next, tt.want)
			}
		})
	}
	// Under a base path: the redirect to the login and the cookie's Path are under it.
	ans := send(t, nil, "GET", adminURL(based, "/nodes"), nil, nil)
	if ans.header.Get("Location") != "/nsq/login?next=%2Fnsq%2Fnodes" {
		t.Errorf("Location %q", ans.header.Get("Location"))
	}
	if c := login(t, based, "bob"); c.Path != "/nsq" {
		t.Errorf("cookie Path %q, want /nsq", c.Path)
	}
}

// TestCrossOriginRefused: a form posted from another site is refused before the login or the
// action is looked at, session or not.
func TestCrossOriginRefused(t *testing.T) {
	a := startLoginAdmin(t, nil)
	alice := login(t, a, "alice")
	cross := []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}
	if ans := send(t, nil, "POST", adminURL(a, "/login"), url.Values{"user": {"alice"}, "password": {"alice-pw"}}, nil, cross...); ans.code != 403 || sessionCookieOf(ans) != nil {
		t.Errorf("cross-origin POST /login: %d", ans.code)
	}
	if ans := send(t, nil, "POST", adminURL(a, "/topics/orders"), url.Values{"action": {"delete"}, "confirmed": {"1"}}, alice, cross...); ans.code != 403 {
		t.Errorf("cross-origin action: %d", ans.code)
	}
	if ans := send(t, nil, "POST", adminURL(a, "/logout"), url.Values{}, alice, cross...); ans.code != 403 {
		t.Errorf("cross-origin logout: %d", ans.code)
	}
	if a.auth.failedLogins.Load() != 0 {
		t.Error("a refused cross-origin login was checked")
	}
	same := []string{"Sec-Fetch-Site", "same-origin"}
	if ans := send(t, nil, "POST", adminURL(a, "/login"), url.Values{"user": {"alice"}, "password": {"alice-pw"}}, nil, same...); ans.code != 303 {
		t.Errorf("same-origin POST /login: %d", ans.code)
	}
}

// TestLoginOverHTTPS: the session cookie is Secure when the admin serves HTTPS.
func TestLoginOverHTTPS(t *testing.T) {
	ca := testutil.NewCA(t, "admin")
	cert, key, _ := ca.Issue(t, testutil.CertOptions{})
	a := startLoginAdmin(t, func(o *Options) { o.TLSCert, o.TLSKey = cert, key })
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, CheckRedirect: noRedirect.CheckRedirect}
	base := "https://" + a.HTTPAddr().String()
	ans := send(t, client, "POST", base+"/login", url.Values{"user": {"alice"}, "password": {"alice-pw"}}, nil)
	c := sessionCookieOf(ans)
	if ans.code != 303 || c == nil || !c.Secure || !c.HttpOnly {
		t.Fatalf("login over HTTPS: %d, cookie %+v", ans.code, c)
	}
	if page := send(t, client, "GET", base+"/nodes", nil, c); page.code != 200 {
		t.Errorf("GET /nodes over HTTPS with the session: %d", page.code)
	}
}

// TestSessionKeyFile: sessions signed with the file's key are valid on another admin with
// the same file and the same users, until the user's hash changes; a short key is refused.
func TestSessionKeyFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "key", strings.Repeat("k", minSessionKey))
	writeFile(t, dir, "short", "short")
	users := testUsers(t)
	configure := func(o *Options) { o.SessionKeyFile = dir + "/key" }
	first := startLoneAdmin(t, func(o *Options) {
		o.Users, o.ACLHTTPHeader = users, ""
		configure(o)
	})
	c := login(t, first, "bob")
	second := startLoneAdmin(t, func(o *Options) {
		o.Users, o.ACLHTTPHeader = users, ""
		configure(o)
	})
	if ans := send(t, nil, "GET", adminURL(second, "/nodes"), nil, c); ans.code != 200 {
		t.Errorf("the session on an admin sharing the key: %d", ans.code)
	}
	if ans := send(t, nil, "GET", adminURL(startLoginAdmin(t, nil), "/nodes"), nil, c); ans.code != 303 {
		t.Errorf("the session on an admin with a random key: %d", ans.code)
	}
	// A new hash for bob (the same password, a new salt) revokes his sessions, not alice's.
	alice := login(t, first, "alice")
	newBob, err := hashPassword("bob-pw", minHashIterations)
	if err != nil {
		t.Fatal(err)
	}
	rehashed := startLoneAdmin(t, func(o *Options) {
		o.Users, o.ACLHTTPHeader = []string{users[0], "bob:" + newBob}, ""
		configure(o)
	})
	if ans := send(t, nil, "GET", adminURL(rehashed, "/nodes"), nil, c); ans.code != 303 {
		t.Errorf("bob's session after his hash changed: %d, want 303 to the login", ans.code)
	}
	if ans := send(t, nil, "GET", adminURL(rehashed, "/api/nodes"), nil, c); ans.code != 401 {
		t.Errorf("bob's session on the API after his hash changed: %d, want 401", ans.code)
	}
	if ans := send(t, nil, "GET", adminURL(rehashed, "/nodes"), nil, alice); ans.code != 200 {
		t.Errorf("alice's session after bob's hash changed: %d", ans.code)
	}
	if ans := send(t, nil, "GET", adminURL(rehashed, "/nodes"), nil, login(t, rehashed, "bob")); ans.code != 200 {
		t.Errorf("bob's new session: %d", ans.code)
	}

	o := NewOptions()
	o.HTTPAddress = "127.0.0.1:0"
	o.NSQDHTTPAddresses = []string{"127.0.0.1:1"}
	o.Users, o.ACLHTTPHeader, o.SessionKeyFile = users, "", dir+"/short"
	if _, err := New(o, testutil.Logger(t), nil); err == nil || !strings.Contains(err.Error(), "want at least 32") {
		t.Errorf("New with a short key: %v", err)
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	ph, err := parseHash(h)
	if err != nil || ph.iterations != hashIterations {
		t.Fatalf("parseHash(%q) = %+v, %v", h, ph, err)
	}
	if !ph.matches("correct horse") || ph.matches("correct horse ") || ph.matches("") {
		t.Error("the hash matches the wrong passwords")
	}
	if h2, _ := HashPassword("correct horse"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	for _, bad := range []string{"", "secret", "pbkdf2-sha256$600000$!!$!!", "pbkdf2-sha1$600000$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==",
		"pbkdf2-sha256$99999999999$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==", "pbkdf2-sha256$600000$c2FsdHNhbHQ=$aGFzaA=="} {
		if _, err := parseHash(bad); err == nil {
			t.Errorf("parseHash(%q) accepted", bad)
		}
	}
}

// TestLoginHashSlots: no more than hashSlots passwords are hashed at once; a login that finds
// every slot taken for the wait is refused 503, for the form and Basic alike, without being
// counted as a failure or against the limits.
func TestLoginHashSlots(t *testing.T) {
	a := newTestAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{"127.0.0.1:1"}
		o.Users, o.ACLHTTPHeader = testUsers(t), ""
	})
	if cap(a.auth.slots) != hashSlots || a.auth.slotWait != hashWait {
		t.Fatalf("%d slots, wait %v", cap(a.auth.slots), a.auth.slotWait)
	}
	a.auth.slotWait = time.Millisecond
	for range hashSlots {
		a.auth.slots <- struct{}{} // PBKDF2s of others, under way
	}
	_, stop := runAdmin(t, a)
	t.Cleanup(stop)
	right := url.Values{"user": {"alice"}, "password": {"alice-pw"}}
	for range loginFailLimit + 1 {
		ans := send(t, nil, "POST", adminURL(a, "/login"), right, nil)
		if ans.code != http.StatusServiceUnavailable || sessionCookieOf(ans) != nil || ans.header.Get("Retry-After") == "" ||
			!strings.Contains(ans.body, "busy") {
			t.Fatalf("login with every slot taken: %d, Retry-After %q", ans.code, ans.header.Get("Retry-After"))
		}
		api := send(t, nil, "GET", adminURL(a, "/api/nodes"), nil, nil, "Authorization", basic("bob", "bob-pw"))
		if api.code != http.StatusServiceUnavailable || api.body != `{"message":"LOGIN_BUSY"}` {
			t.Fatalf("Basic with every slot taken: %d %s", api.code, api.body)
		}
	}
	if a.auth.failedLogins.Load() != 0 || a.auth.limitedLogins.Load() != 0 {
		t.Errorf("refused logins counted: failed %d, limited %d", a.auth.failedLogins.Load(), a.auth.limitedLogins.Load())
	}
	for range hashSlots {
		<-a.auth.slots
	}
	login(t, a, "alice")
	if api := send(t, nil, "GET", adminURL(a, "/metrics"), nil, nil, "Authorization", basic("bob", "bob-pw")); api.code != 200 {
		t.Errorf("Basic once the slots are free: %d", api.code)
	}
	if len(a.auth.slots) != 0 {
		t.Errorf("%d slots left taken", len(a.auth.slots))
	}
}

// TestSecureCookies: behind a proxy that serves HTTPS, --secure-cookies marks the session
// cookie Secure, and its clearing at logout too; an admin with logins over plain HTTP warns at
// start, one that serves HTTPS does not.
func TestSecureCookies(t *testing.T) {
	tests := []struct {
		name     string
		secure   bool
		wantWarn string
		wantFlag bool
	}{
		{"plain", false, "passwords and session cookies cross the network in clear", false},
		{"behind an HTTPS proxy", true, "trusting the proxy in front to serve HTTPS", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			o := NewOptions()
			o.HTTPAddress, o.NSQDHTTPAddresses = "127.0.0.1:0", []string{"127.0.0.1:1"}
			o.Users, o.ACLHTTPHeader, o.SecureCookies = testUsers(t), "", tt.secure
			a, err := New(o, slog.New(slog.NewTextHandler(&logs, nil)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), tt.wantWarn) {
				t.Errorf("no warning %q at start:\n%s", tt.wantWarn, logs.String())
			}
			_, stop := runAdmin(t, a)
			t.Cleanup(stop)
			c := login(t, a, "bob")
			if c.Secure != tt.wantFlag {
				t.Errorf("session cookie Secure = %v, want %v", c.Secure, tt.wantFlag)
			}
			out := send(t, nil, "POST", adminURL(a, "/logout"), url.Values{}, c)
			if cleared := sessionCookieOf(out); cleared == nil || cleared.Secure != tt.wantFlag {
				t.Errorf("logout's cookie %+v, want Secure = %v", cleared, tt.wantFlag)
			}
		})
	}

	ca := testutil.NewCA(t, "admin")
	cert, key, _ := ca.Issue(t, testutil.CertOptions{})
	var logs bytes.Buffer
	o := NewOptions()
	o.HTTPAddress, o.NSQDHTTPAddresses = "127.0.0.1:0", []string{"127.0.0.1:1"}
	o.Users, o.ACLHTTPHeader, o.TLSCert, o.TLSKey = testUsers(t), "", cert, key
	a, err := New(o, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := runAdmin(t, a)
	stop()
	if strings.Contains(logs.String(), "plain HTTP") {
		t.Errorf("an admin serving HTTPS warns of plain HTTP:\n%s", logs.String())
	}
}
