package etagcache_test

// Real client libraries in front of and behind the cache: golang.org/x/oauth2
// in both layer orders, with two users on one store and with rotating tokens.
// The cookie jar and go-github have files of their own.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/etagcache/etagcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

// bearer is a token source for one user of userOrigin.
func bearer(user string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok-" + user, TokenType: "Bearer"})
}

// oauthBelow is the layout the issue warns about: the cache's base adds the
// credential, so the cache never sees who is asking.
func oauthBelow(src oauth2.TokenSource) http.RoundTripper {
	return &oauth2.Transport{Source: src, Base: http.DefaultTransport}
}

// userPoll is one request of pollUsers: who asked, at which revision, and
// what came back.
type userPoll struct {
	user string
	rev  int
	resp *http.Response
	body string
}

// pollUsers sends n requests, alternating between users, publishing a new
// revision at the origin every bumpEvery requests, and returns what each
// got. It asserts nothing: callers decide what is right.
func pollUsers(t *testing.T, o *userOrigin, users []string, n, bumpEvery int,
	do func(user string) (*http.Response, string)) []userPoll {
	t.Helper()
	rev := 1
	polls := make([]userPoll, 0, n)
	for i := 0; i < n; i++ {
		if i > 0 && i%bumpEvery == 0 {
			rev = o.bump()
		}
		user := users[i%len(users)]
		resp, body := do(user)
		polls = append(polls, userPoll{user: user, rev: rev, resp: resp, body: body})
	}
	return polls
}

// wrongBodies counts the polls whose body is not the asking user's document
// at the current revision, and asserts each one.
func wrongBodies(t *testing.T, polls []userPoll) int {
	t.Helper()
	wrong := 0
	for i, p := range polls {
		want := userBody(p.user, p.rev)
		if !assert.Equal(t, want, p.body, "request %d by %s", i, p.user) {
			wrong++
		}
		assert.Equal(t, http.StatusOK, p.resp.StatusCode, "request %d by %s", i, p.user)
	}
	return wrong
}

// assertWarnedOnce checks that a Transport logged exactly one warning about
// credentials below the cache, and that it tells the reader what to do.
func assertWarnedOnce(t *testing.T, name string, logs *logCapture) {
	t.Helper()
	warns := logs.records(t, slog.LevelWarn)
	if !assert.Len(t, warns, 1, "%s: one warning per Transport, not one per request", name) {
		return
	}
	text := strings.ToLower(fmt.Sprint(warns[0]))
	assert.Contains(t, text, "withpartition", "%s: the warning names the partition hook (safe layout 2): %v", name, warns[0])
	assert.Contains(t, text, "above", "%s: the warning names credentials above the cache (safe layout 1): %v", name, warns[0])
}

type ctxUser struct{}

// perUserBase picks, below the cache, the oauth2 transport of the user named
// in the request's context: a multi-tenant service with one cache.
type perUserBase map[string]http.RoundTripper

func (b perUserBase) RoundTrip(req *http.Request) (*http.Response, error) {
	user, _ := req.Context().Value(ctxUser{}).(string)
	rt, ok := b[user]
	if !ok {
		return nil, fmt.Errorf("no transport for user %q", user)
	}
	return rt.RoundTrip(req)
}

// TestOAuth2BelowCacheNeverServesAnotherUsersBody: with oauth2.Transport as
// the cache's base, the cache cannot tell alice from bob. Before the fix,
// alice's entry was stored in the anonymous partition and the origin, whose
// tag names only the revision, confirmed it for bob: bob got alice's body.
// Now such responses are neither stored nor merged, a warning is logged once
// per Transport, and Cache-Status says why.
func TestOAuth2BelowCacheNeverServesAnotherUsersBody(t *testing.T) {
	users := []string{"alice", "bob"}
	const n, bumpEvery = 24, 6

	t.Run("fleet: one Transport per user, one shared store", func(t *testing.T) {
		o := newUserOrigin(t, users...)
		store := etagcache.NewMemoryStore(0)
		clients := map[string]*http.Client{}
		logs := map[string]*logCapture{}
		trs := map[string]*etagcache.Transport{}
		for _, u := range users {
			lc, lg := newLogCapture()
			trs[u] = etagcache.NewTransport(store, etagcache.WithBase(oauthBelow(bearer(u))), etagcache.WithLogger(lg))
			clients[u], logs[u] = trs[u].Client(), lc
		}
		polls := pollUsers(t, o, users, n, bumpEvery, func(u string) (*http.Response, string) {
			return getBody(t, clients[u], o.URL+"/private")
		})
		wrong := wrongBodies(t, polls)
		t.Logf("wrong bodies: %d of %d", wrong, n)
		assertBelowCacheRefused(t, o, polls)
		for _, u := range users {
			assertWarnedOnce(t, u, logs[u])
			assert.Zero(t, trs[u].Stats().Stored, "%s: nothing is stored under a partition that does not know the user", u)
		}
	})

	t.Run("one Transport, user chosen below the cache", func(t *testing.T) {
		o := newUserOrigin(t, users...)
		lc, lg := newLogCapture()
		base := perUserBase{}
		for _, u := range users {
			base[u] = oauthBelow(bearer(u))
		}
		tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithBase(base), etagcache.WithLogger(lg))
		c := tr.Client()
		polls := pollUsers(t, o, users, n, bumpEvery, func(u string) (*http.Response, string) {
			ctx := context.WithValue(context.Background(), ctxUser{}, u)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL+"/private", nil)
			require.NoError(t, err)
			return doBody(t, c, req)
		})
		wrong := wrongBodies(t, polls)
		t.Logf("wrong bodies: %d of %d", wrong, n)
		assertBelowCacheRefused(t, o, polls)
		assertWarnedOnce(t, "shared Transport", lc)
		assert.Zero(t, tr.Stats().Stored)
	})
}

// TestOAuth2BelowCacheConcurrentUsers: many goroutines of two users share one
// Transport whose base adds the credential. Every body is the asker's own,
// and the warning is still logged once, not once per racing request.
func TestOAuth2BelowCacheConcurrentUsers(t *testing.T) {
	const goroutines, each = 8, 6
	users := []string{"alice", "bob"}
	o := newUserOrigin(t, users...)
	lc, lg := newLogCapture()
	base := perUserBase{}
	for _, u := range users {
		base[u] = oauthBelow(bearer(u))
	}
	c := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithBase(base), etagcache.WithLogger(lg)).Client()

	type got struct{ user, body, status string }
	results := make(chan got, goroutines*each)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		user := users[g%len(users)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.WithValue(context.Background(), ctxUser{}, user)
			for i := 0; i < each; i++ {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL+"/private", nil)
				if err != nil {
					results <- got{user: user, body: err.Error()}
					continue
				}
				resp, err := c.Do(req)
				if err != nil {
					results <- got{user: user, body: err.Error()}
					continue
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil {
					b = []byte(err.Error())
				}
				results <- got{user: user, body: string(b), status: resp.Header.Get("Cache-Status")}
			}
		}()
	}
	wg.Wait()
	close(results)
	n := 0
	for r := range results {
		n++
		assert.Equal(t, userBody(r.user, 1), r.body)
		assert.Contains(t, r.status, "detail=credentials-below-cache")
	}
	assert.Equal(t, goroutines*each, n)
	assertWarnedOnce(t, "shared Transport", lc)
}

// TestOAuth2BelowCacheNeverMergesIntoAnonymousEntry: a shared store already
// holds the public edition, stored by a caller without credentials. A
// Transport with oauth2 below the cache finds that entry in the anonymous
// partition and sends its tag; the origin, whose tag names only the
// revision, answers 304 for alice too. That 304 must not be merged with the
// public body: the cache asks again without validators, hands alice her own
// body, and neither stores it nor touches the public entry.
func TestOAuth2BelowCacheNeverMergesIntoAnonymousEntry(t *testing.T) {
	o := newUserOrigin(t, "alice")
	store := etagcache.NewMemoryStore(0)
	anon := etagcache.NewTransport(store).Client()
	lc, lg := newLogCapture()
	alice := etagcache.NewTransport(store, etagcache.WithBase(oauthBelow(bearer("alice"))), etagcache.WithLogger(lg)).Client()

	_, body := getBody(t, anon, o.URL+"/private")
	require.Equal(t, userBody("anonymous", 1), body)

	for i := 0; i < 3; i++ {
		resp, body := getBody(t, alice, o.URL+"/private")
		assert.Equal(t, userBody("alice", 1), body, "alice's request %d", i)
		assert.Contains(t, resp.Header.Get("Cache-Status"), "detail=credentials-below-cache", "alice's request %d", i)
		assert.NotEqual(t, etagcache.ResultRevalidated, etagcache.ResultOf(resp), "alice's request %d", i)
	}
	for _, h := range o.hits() {
		if h.user == "alice" && h.status == http.StatusOK {
			assert.Empty(t, h.ifNoneMatch, "alice's body came from an unconditional request")
		}
	}

	resp, body := getBody(t, anon, o.URL+"/private")
	assert.Equal(t, userBody("anonymous", 1), body, "the public entry still holds the public body")
	assert.Equal(t, etagcache.ResultRevalidated, etagcache.ResultOf(resp))
	assertWarnedOnce(t, "alice", lc)
}

// assertBelowCacheRefused checks what every response of an unsafe layout
// says about itself, and that the origin never had to confirm anything.
func assertBelowCacheRefused(t *testing.T, o *userOrigin, polls []userPoll) {
	t.Helper()
	for i, p := range polls {
		assert.Contains(t, p.resp.Header.Get("Cache-Status"), "detail=credentials-below-cache", "request %d", i)
		r := etagcache.ResultOf(p.resp)
		assert.NotEqual(t, etagcache.ResultRevalidated, r, "request %d: no body may come from the store", i)
		assert.NotEqual(t, etagcache.ResultHit, r, "request %d: no body may come from the store", i)
		assert.Empty(t, p.resp.Header.Get("X-From-Cache"), "request %d", i)
	}
	assert.Zero(t, o.statuses()[http.StatusNotModified], "nothing stored, so nothing to revalidate")
	assert.Equal(t, len(polls), o.statuses()[http.StatusOK])
}

// assertWarm checks the polls of a safe layout: every user's first request
// at each revision is a miss, every other one a revalidation answered 304.
func assertWarm(t *testing.T, o *userOrigin, polls []userPoll) {
	t.Helper()
	seen := map[string]bool{}
	misses := 0
	for i, p := range polls {
		first := !seen[fmt.Sprint(p.user, p.rev)]
		seen[fmt.Sprint(p.user, p.rev)] = true
		want := etagcache.ResultRevalidated
		if first {
			want = etagcache.ResultMiss
			misses++
		}
		assert.Equal(t, want, etagcache.ResultOf(p.resp), "request %d by %s at revision %d", i, p.user, p.rev)
		assert.NotContains(t, p.resp.Header.Get("Cache-Status"), "credentials-below-cache", "request %d", i)
	}
	assert.Equal(t, map[int]int{http.StatusOK: misses, http.StatusNotModified: len(polls) - misses}, o.statuses())
}

// TestOAuth2SafeLayoutsAreWarmAndSeparate: the two layouts the warning
// recommends keep users apart and still save the bodies.
func TestOAuth2SafeLayoutsAreWarmAndSeparate(t *testing.T) {
	users := []string{"alice", "bob"}
	const n, bumpEvery = 24, 6

	t.Run("oauth2 above the cache, one Transport and store for both users", func(t *testing.T) {
		o := newUserOrigin(t, users...)
		lc, lg := newLogCapture()
		tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithLogger(lg))
		clients := map[string]*http.Client{}
		for _, u := range users {
			clients[u] = &http.Client{Transport: &oauth2.Transport{Source: bearer(u), Base: tr}}
		}
		polls := pollUsers(t, o, users, n, bumpEvery, func(u string) (*http.Response, string) {
			return getBody(t, clients[u], o.URL+"/private")
		})
		assert.Zero(t, wrongBodies(t, polls))
		assertWarm(t, o, polls)
		assert.Empty(t, lc.records(t, slog.LevelWarn))
	})

	t.Run("oauth2 below the cache with WithPartition, one store", func(t *testing.T) {
		o := newUserOrigin(t, users...)
		store := etagcache.NewMemoryStore(0)
		clients := map[string]*http.Client{}
		logs := map[string]*logCapture{}
		for _, u := range users {
			lc, lg := newLogCapture()
			tr := etagcache.NewTransport(store, etagcache.WithBase(oauthBelow(bearer(u))), etagcache.WithLogger(lg),
				etagcache.WithPartition(func(*http.Request) string { return u }))
			clients[u], logs[u] = tr.Client(), lc
		}
		polls := pollUsers(t, o, users, n, bumpEvery, func(u string) (*http.Response, string) {
			return getBody(t, clients[u], o.URL+"/private")
		})
		assert.Zero(t, wrongBodies(t, polls))
		assertWarm(t, o, polls)
		for _, u := range users {
			assert.Empty(t, logs[u].records(t, slog.LevelWarn), u)
		}
	})
}

// rotatingSource hands out a new access token every `every` calls, as a
// GitHub App installation token or any short-lived OAuth token rotates.
// (oauth2.ReuseTokenSource would rotate on expiry, which needs the clock to
// move; counting calls rotates deterministically.)
type rotatingSource struct {
	user  string
	every int

	mu    sync.Mutex
	calls int
}

func (s *rotatingSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	gen := (s.calls-1)/s.every + 1
	return &oauth2.Token{AccessToken: fmt.Sprintf("tok-%s-%d", s.user, gen), TokenType: "Bearer"}, nil
}

// login is a partition hook that keys by the identity the tokens belong to,
// not by the token itself: the value survives rotation.
func (s *rotatingSource) login(*http.Request) string {
	return s.user
}

// TestOAuth2TokenRotationWithPartitionStaysWarm: the default partition is a
// digest of the credential, so a rotated token starts a cold cache (every
// body fetched again, the old entries left behind). A partition hook keyed by
// a stable identity keeps the entries: the first request after a rotation is
// already conditional and answered 304.
func TestOAuth2TokenRotationWithPartitionStaysWarm(t *testing.T) {
	const polls, every = 12, 3
	cases := []struct {
		name string
		// client builds the caller's client for src over a fresh store.
		client func(src *rotatingSource, lg *slog.Logger) *http.Client
		// warm: the first request after a rotation is conditional.
		warm bool
		// varyAuth: the origin sends Vary: Authorization (GitHub does).
		varyAuth bool
	}{
		{"oauth2 above the cache, default partition", func(src *rotatingSource, lg *slog.Logger) *http.Client {
			tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithLogger(lg))
			return &http.Client{Transport: &oauth2.Transport{Source: src, Base: tr}}
		}, false, false},
		{"oauth2 above the cache, WithPartition by login", func(src *rotatingSource, lg *slog.Logger) *http.Client {
			tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithLogger(lg),
				etagcache.WithPartition(src.login))
			return &http.Client{Transport: &oauth2.Transport{Source: src, Base: tr}}
		}, true, false},
		{"oauth2 below the cache, WithPartition by login", func(src *rotatingSource, lg *slog.Logger) *http.Client {
			return etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithLogger(lg),
				etagcache.WithBase(oauthBelow(src)), etagcache.WithPartition(src.login)).Client()
		}, true, false},
		// The hook is trusted with who may share an entry; an origin's
		// Vary: Authorization must not undo that on every rotation.
		{"oauth2 above the cache, WithPartition by login, Vary: Authorization", func(src *rotatingSource, lg *slog.Logger) *http.Client {
			tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithLogger(lg),
				etagcache.WithPartition(src.login))
			return &http.Client{Transport: &oauth2.Transport{Source: src, Base: tr}}
		}, true, true},
		{"oauth2 below the cache, WithPartition by login, Vary: Authorization", func(src *rotatingSource, lg *slog.Logger) *http.Client {
			return etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithLogger(lg),
				etagcache.WithBase(oauthBelow(src)), etagcache.WithPartition(src.login)).Client()
		}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newUserOrigin(t, "alice")
			o.varyAuth = tc.varyAuth
			lc, lg := newLogCapture()
			src := &rotatingSource{user: "alice", every: every}
			c := tc.client(src, lg)
			cold := 0
			for i := 0; i < polls; i++ {
				resp, body := getBody(t, c, o.URL+"/private")
				require.Equal(t, userBody("alice", 1), body, "poll %d", i)
				rotated := i%every == 0
				want := etagcache.ResultRevalidated
				if i == 0 || (rotated && !tc.warm) {
					want = etagcache.ResultMiss
				}
				if etagcache.ResultOf(resp) == etagcache.ResultMiss {
					cold++
				}
				assert.Equal(t, want, etagcache.ResultOf(resp), "poll %d (token generation %d)", i, i/every+1)
			}
			hits := o.hits()
			require.Len(t, hits, polls, "one origin request per poll")
			for i, h := range hits {
				assert.Equal(t, fmt.Sprintf("tok-alice-%d", i/every+1), h.token, "poll %d carried the current token", i)
				if i%every == 0 && i > 0 {
					if tc.warm {
						assert.Equal(t, `"rev-1"`, h.ifNoneMatch, "poll %d: first request after rotation is conditional", i)
						assert.Equal(t, http.StatusNotModified, h.status, "poll %d", i)
					} else {
						assert.Empty(t, h.ifNoneMatch, "poll %d: a new token is a new partition, a cold cache", i)
						assert.Equal(t, http.StatusOK, h.status, "poll %d", i)
					}
				}
			}
			t.Logf("%s: %d of %d polls fetched the body", tc.name, cold, polls)
			assert.Empty(t, lc.records(t, slog.LevelWarn))
		})
	}
}

// doBody sends req through c and returns the response (body closed) and the
// body.
func doBody(t testing.TB, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}
