package etagcache_test

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/etagcache/etagcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sessionOrigin renews its session cookie on every response, 304s included,
// with a new value each time, as rolling-session frameworks do. It accepts
// the newest value and the one before it (a grace for requests in flight),
// so a client that misses two renewals in a row has lost its session.
type sessionOrigin struct {
	*httptest.Server

	mu         sync.Mutex
	varyCookie bool           // send Vary: Cookie, as many sites (and GitHub) do
	latest     map[string]int // user -> newest generation issued
	version    int            // of the feed
	log        []sessionHit
}

// sessionHit is what the origin saw and answered for one GET /feed.
type sessionHit struct {
	cookie string // the session value presented
	newest string // the newest value issued before this request
	status int
}

func newSessionOrigin(t testing.TB) *sessionOrigin {
	t.Helper()
	o := &sessionOrigin{latest: map[string]int{}, version: 1}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.renew(w, r.URL.Query().Get("user"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /feed", o.feed)
	o.Server = httptest.NewServer(mux)
	t.Cleanup(o.Close)
	return o
}

// sessionValue is the cookie value of user's session at generation gen.
func sessionValue(user string, gen int) string { return user + "." + strconv.Itoa(gen) }

// sessionUser is the user a session value belongs to ("" if none): what a
// partition hook keyed by a stable user id reads.
func sessionUser(req *http.Request) string {
	c, err := req.Cookie("session")
	if err != nil {
		return ""
	}
	user, _, _ := strings.Cut(c.Value, ".")
	return user
}

// renew issues user's next session value. Called with o.mu held.
func (o *sessionOrigin) renew(w http.ResponseWriter, user string) {
	o.latest[user]++
	http.SetCookie(w, &http.Cookie{Name: "session", Value: sessionValue(user, o.latest[user]),
		Path: "/", MaxAge: 120, HttpOnly: true})
}

func (o *sessionOrigin) feed(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	hit := sessionHit{}
	defer func() { o.log = append(o.log, hit) }()
	if c, err := r.Cookie("session"); err == nil {
		hit.cookie = c.Value
	}
	user, genText, _ := strings.Cut(hit.cookie, ".")
	gen, _ := strconv.Atoi(genText)
	newest, known := o.latest[user]
	hit.newest = sessionValue(user, newest)
	if !known || gen < newest-1 || gen > newest {
		hit.status = http.StatusUnauthorized
		http.Error(w, "session lost, log in again", hit.status)
		return
	}
	o.renew(w, user)
	etag := fmt.Sprintf(`"feed-%d"`, o.version)
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "private, max-age=0")
	if o.varyCookie {
		w.Header().Set("Vary", "Cookie")
	}
	if r.Header.Get("If-None-Match") == etag {
		hit.status = http.StatusNotModified
		w.WriteHeader(hit.status)
		return
	}
	hit.status = http.StatusOK
	fmt.Fprintf(w, "feed of %s, version %d", user, o.version)
}

func (o *sessionOrigin) publish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.version++
}

func (o *sessionOrigin) hits() []sessionHit {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]sessionHit(nil), o.log...)
}

// TestCookieJarKeepsSessionRenewedOn304: a net/http/cookiejar client polls a
// feed through the cache while the origin renews the session cookie on every
// response. Before the fix the 304's Set-Cookie was dropped in the merge, the
// jar kept presenting an old value, and the session was lost on the 4th poll.
//
// With the default partition (Cookie is part of it) a rolling cookie makes
// every poll a cold partition: correct, but nothing saved. A partition hook
// keyed by the stable user id in the cookie keeps the cache warm, so the
// renewals arrive on 304s and must reach the jar.
func TestCookieJarKeepsSessionRenewedOn304(t *testing.T) {
	const polls, publishAt = 10, 5
	cases := []struct {
		name       string
		opts       []etagcache.Option
		warm       bool
		varyCookie bool
	}{
		{"default partition: correct but cold", nil, false, false},
		{"WithPartition by user id: warm", []etagcache.Option{etagcache.WithPartition(sessionUser)}, true, false},
		// The hook is trusted with who may share an entry; the origin's
		// Vary: Cookie must not make every renewed value a cold variant.
		{"WithPartition by user id, origin sends Vary: Cookie: warm",
			[]etagcache.Option{etagcache.WithPartition(sessionUser)}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newSessionOrigin(t)
			o.varyCookie = tc.varyCookie
			jar, err := cookiejar.New(nil)
			require.NoError(t, err)
			tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), tc.opts...)
			c := &http.Client{Transport: tr, Jar: jar}

			resp, err := c.Post(o.URL+"/login?user=alice", "text/plain", nil)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, http.StatusNoContent, resp.StatusCode)

			feed, err := url.Parse(o.URL + "/feed")
			require.NoError(t, err)
			survived, revalidated := 0, 0
			for i := 0; i < polls; i++ {
				if i == publishAt {
					o.publish()
				}
				resp, body := getBody(t, c, feed.String())
				hits := o.hits()
				require.Len(t, hits, i+1, "one origin request per poll")
				hit := hits[i]

				// The origin saw the newest session value, and the jar now
				// holds the one this response issued.
				ok := assert.Equal(t, hit.newest, hit.cookie, "poll %d presented an old session", i)
				ok = assert.Equal(t, http.StatusOK, resp.StatusCode, "poll %d: %s", i, body) && ok
				want := sessionValue("alice", i+2) // login issued generation 1
				ok = assert.Equal(t, []string{"session=" + want}, cookieStrings(jar.Cookies(feed)), "poll %d: jar", i) && ok
				if ok {
					survived++
				}
				assert.Equal(t, fmt.Sprintf("feed of alice, version %d", 1+i/publishAt), body, "poll %d", i)
				// The 304's own Set-Cookie, exactly once; a stored one is never replayed.
				assert.Equal(t, []string{"session=" + want}, setCookieValues(resp), "poll %d", i)

				wantResult := etagcache.ResultMiss
				if tc.warm && i != 0 && i != publishAt {
					wantResult = etagcache.ResultRevalidated
				}
				assert.Equal(t, wantResult, etagcache.ResultOf(resp), "poll %d", i)
				if hit.status == http.StatusNotModified {
					revalidated++
				}
			}
			t.Logf("%s: session intact after %d of %d polls, %d answered 304", tc.name, survived, polls, revalidated)
			if tc.warm {
				assert.Equal(t, polls-2, revalidated, "every poll but the first and the one after the change is a 304")
			} else {
				assert.Zero(t, revalidated, "a new cookie value is a new partition")
			}
		})
	}
}

// cookieStrings renders cookies as name=value.
func cookieStrings(cs []*http.Cookie) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name + "=" + c.Value
	}
	return out
}

// setCookieValues returns the name=value part of every Set-Cookie field.
func setCookieValues(resp *http.Response) []string {
	return cookieStrings(resp.Cookies())
}
