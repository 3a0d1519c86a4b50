package etagcache_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"unsafe"

	"github.com/etagcache/etagcache"
	"github.com/google/go-github/v75/github"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

// goGitHubState reads the rate-limit state a go-github Client keeps for a
// category: the state it consults before sending a request, and which it
// skips updating when a response carries X-From-Cache. go-github exposes it
// only through that refusal, so the test reads the unexported field; if a
// go-github upgrade renames it, this fails loudly rather than passing.
func goGitHubState(t testing.TB, c *github.Client, cat github.RateLimitCategory) github.Rate {
	t.Helper()
	f := reflect.ValueOf(c).Elem().FieldByName("rateLimits")
	require.True(t, f.IsValid(), "go-github's Client has no rateLimits field: update goGitHubState")
	r := f.Index(int(cat))
	require.Equal(t, reflect.TypeOf(github.Rate{}), r.Type())
	return *(*github.Rate)(unsafe.Pointer(r.UnsafeAddr()))
}

// asFakeRate puts go-github's Rate in the fake's terms for comparison.
func asFakeRate(r github.Rate) fakeRate {
	return fakeRate{Limit: r.Limit, Remaining: r.Remaining, Used: r.Used, Reset: r.Reset.Unix(), Resource: r.Resource}
}

// TestGoGitHubRateStateFollowsOrigin: two go-github clients (auth above the
// cache, one Transport and store) poll a repository 20 times each while it
// changes three times and other processes spend units of the same tokens.
// go-github skips updating its rate state for a response with X-From-Cache;
// before the fix every revalidation carried it, the state froze, and only 3
// of 20 polls left it right. Now a revalidated response carries the origin's
// fresh 304 headers and no X-From-Cache, so the state follows the origin,
// while ResultOf and Cache-Status still tell a revalidation from a miss.
func TestGoGitHubRateStateFollowsOrigin(t *testing.T) {
	const polls = 20
	ctx := context.Background()
	gh := newFakeGitHub(t)
	gh.addUser("ghp_alice", "etagcache")
	gh.addUser("ghp_bob", "bob")
	gh.addRepo("etagcache", "etagcache", "version 1")
	changes := map[int]string{5: "version 2", 11: "version 3", 16: "version 4"}

	lc, lg := newLogCapture()
	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithLogger(lg))
	tokens := []string{"ghp_alice", "ghp_bob"}
	clients := map[string]*github.Client{}
	for _, tok := range tokens {
		c, err := github.NewClient(tr.Client()).WithAuthToken(tok).WithEnterpriseURLs(gh.URL, gh.URL)
		require.NoError(t, err)
		clients[tok] = c
	}

	stateRight := map[string]int{}
	for i := 0; i < polls; i++ {
		if d, ok := changes[i]; ok {
			gh.update("etagcache", "etagcache", d)
		}
		for k, tok := range tokens {
			gh.spend(tok, (i+k)%3) // the same token at work elsewhere
			c := clients[tok]
			repo, resp, err := c.Repositories.Get(ctx, "etagcache", "etagcache")
			require.NoError(t, err, "%s poll %d", tok, i)
			want := gh.rate(tok)

			cur := gh.repo("etagcache", "etagcache")
			assert.Equal(t, cur.description, repo.GetDescription(), "%s poll %d", tok, i)
			assert.Equal(t, 10*cur.version, repo.GetStargazersCount(), "%s poll %d", tok, i)
			assert.Equal(t, updatedAt(cur.version).Unix(), repo.GetUpdatedAt().Unix(), "%s poll %d", tok, i)
			assert.Equal(t, "etagcache/etagcache", repo.GetFullName())
			assert.Equal(t, tok == "ghp_alice", repo.GetPermissions()["admin"], "%s poll %d: own permissions", tok, i)

			assert.Equal(t, want, asFakeRate(resp.Rate), "%s poll %d: resp.Rate", tok, i)
			state := asFakeRate(goGitHubState(t, c, github.CoreCategory))
			if assert.Equal(t, want, state, "%s poll %d: the client's own rate state", tok, i) {
				stateRight[tok]++
			}

			miss := i == 0 || changes[i] != ""
			if miss {
				assert.Equal(t, etagcache.ResultMiss, etagcache.ResultOf(resp.Response), "%s poll %d", tok, i)
			} else {
				assert.Equal(t, etagcache.ResultRevalidated, etagcache.ResultOf(resp.Response), "%s poll %d", tok, i)
				assert.Contains(t, resp.Header.Get("Cache-Status"), "fwd-status=304", "%s poll %d", tok, i)
			}
			assert.Empty(t, resp.Header.Get("X-From-Cache"), "%s poll %d: the origin was contacted", tok, i)
		}
	}
	for _, tok := range tokens {
		t.Logf("%s: go-github's rate state equalled the origin's after %d of %d polls", tok, stateRight[tok], polls)
	}

	// Four bodies per user (the first poll and three changes); the other
	// polls were 304s and cost nothing.
	assert.Equal(t, map[int]int{200: 2 * 4, 304: 2 * (polls - 4)}, gh.counts())
	spent := 0
	for i := 0; i < polls; i++ {
		spent += i % 3
	}
	assert.Equal(t, 4+spent, gh.rate("ghp_alice").Used)

	// The rate_limit endpoint, through the same cache, agrees, and leaves the
	// client's state where the origin is.
	for _, tok := range tokens {
		limits, _, err := clients[tok].RateLimit.Get(ctx)
		require.NoError(t, err)
		assert.Equal(t, gh.rate(tok), asFakeRate(*limits.GetCore()), tok)
		assert.Equal(t, gh.rate(tok), asFakeRate(goGitHubState(t, clients[tok], github.CoreCategory)), tok)
	}
	assert.Empty(t, lc.records(t, 0), "no warnings about a layout that is safe")
}

// TestGoGitHubStopsAtZeroRemainingLearnedFrom304: go-github refuses locally,
// without a request, once its state says the budget is spent. That state
// must come from 304s too: here other processes spend the budget, a
// revalidation brings the news (Remaining 0), and go-github's next call is
// refused without reaching the origin.
func TestGoGitHubStopsAtZeroRemainingLearnedFrom304(t *testing.T) {
	ctx := context.Background()
	gh := newFakeGitHub(t)
	gh.addUser("ghp_alice", "etagcache")
	gh.addRepo("etagcache", "etagcache", "version 1")
	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0))
	c, err := github.NewClient(tr.Client()).WithAuthToken("ghp_alice").WithEnterpriseURLs(gh.URL, gh.URL)
	require.NoError(t, err)

	_, resp, err := c.Repositories.Get(ctx, "etagcache", "etagcache")
	require.NoError(t, err)
	require.Equal(t, etagcache.ResultMiss, etagcache.ResultOf(resp.Response))

	gh.spend("ghp_alice", gh.rate("ghp_alice").Remaining) // the rest, elsewhere
	before := gh.counts()
	_, resp, err = c.Repositories.Get(ctx, "etagcache", "etagcache")
	require.NoError(t, err, "a 304 costs nothing, so the revalidation goes through")
	require.Equal(t, etagcache.ResultRevalidated, etagcache.ResultOf(resp.Response))
	assert.Equal(t, 0, resp.Rate.Remaining)

	_, _, err = c.Repositories.Get(ctx, "etagcache", "etagcache")
	var rle *github.RateLimitError
	require.ErrorAs(t, err, &rle, "go-github knows the budget is spent")
	assert.Contains(t, rle.Message, "not making remote request")
	after := gh.counts()
	assert.Equal(t, before[304]+1, after[304], "one revalidation")
	assert.Equal(t, fmt.Sprint(before[200], before[403]), fmt.Sprint(after[200], after[403]),
		"the refused call never reached the origin")
}

// TestGoGitHubTokenRotationWithPartition: a GitHub App's installation token
// rotates (hourly on GitHub; every 3 requests here), and GitHub's Vary names
// Authorization. With the default partition every rotation is a cold cache:
// each stored body is fetched again at a unit each. With a partition hook
// keyed by the installation, the issue asks that the cache stay warm: the
// first request with a new token is already conditional and costs nothing.
// (Whether Vary: Authorization is then satisfied by the hook's identity is
// the transport's decision; this test holds it to the promise.)
func TestGoGitHubTokenRotationWithPartition(t *testing.T) {
	const polls, every = 12, 3
	cases := []struct {
		name string
		opts []etagcache.Option
		warm bool
	}{
		{"default partition: cold after each rotation", nil, false},
		{"WithPartition by installation: warm across rotations",
			[]etagcache.Option{etagcache.WithPartition(func(*http.Request) string { return "installation-42" })}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			gh := newFakeGitHub(t)
			for gen := 1; gen <= polls/every; gen++ {
				gh.addUser(fmt.Sprintf("tok-app-%d", gen), "etagcache")
			}
			gh.addRepo("etagcache", "etagcache", "version 1")
			src := &rotatingSource{user: "app", every: every}
			tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), tc.opts...)
			c, err := github.NewClient(&http.Client{Transport: &oauth2.Transport{Source: src, Base: tr}}).
				WithEnterpriseURLs(gh.URL, gh.URL)
			require.NoError(t, err)

			misses := 0
			for i := 0; i < polls; i++ {
				repo, resp, err := c.Repositories.Get(ctx, "etagcache", "etagcache")
				require.NoError(t, err, "poll %d", i)
				assert.Equal(t, "version 1", repo.GetDescription())
				want := etagcache.ResultRevalidated
				if i == 0 || (!tc.warm && i%every == 0) {
					want = etagcache.ResultMiss
				}
				got := etagcache.ResultOf(resp.Response)
				if got == etagcache.ResultMiss {
					misses++
				}
				assert.Equal(t, want, got, "poll %d (token generation %d)", i, i/every+1)
				tok := fmt.Sprintf("tok-app-%d", i/every+1)
				assert.Equal(t, gh.rate(tok), asFakeRate(goGitHubState(t, c, github.CoreCategory)), "poll %d", i)
			}
			t.Logf("%s: %d of %d polls cost a unit", tc.name, misses, polls)
			wantBodies := 1
			if !tc.warm {
				wantBodies = polls / every
			}
			assert.Equal(t, map[int]int{200: wantBodies, 304: polls - wantBodies}, gh.counts())
		})
	}
}

// TestGoGitHubOAuth2BelowCache: go-github over a cache whose base adds the
// token (the unsafe layout). The cache cannot tell whose response it holds,
// so it stores nothing: every poll is a correct, full fetch that costs a
// unit, go-github's state follows, and the Transport warns once.
func TestGoGitHubOAuth2BelowCache(t *testing.T) {
	const polls = 5
	ctx := context.Background()
	gh := newFakeGitHub(t)
	gh.addUser("tok-alice", "etagcache")
	gh.addRepo("etagcache", "etagcache", "version 1")
	lc, lg := newLogCapture()
	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithLogger(lg),
		etagcache.WithBase(oauthBelow(bearer("alice"))))
	c, err := github.NewClient(tr.Client()).WithEnterpriseURLs(gh.URL, gh.URL)
	require.NoError(t, err)
	for i := 0; i < polls; i++ {
		if i == 3 {
			gh.update("etagcache", "etagcache", "version 2")
		}
		repo, resp, err := c.Repositories.Get(ctx, "etagcache", "etagcache")
		require.NoError(t, err, "poll %d", i)
		assert.Equal(t, gh.repo("etagcache", "etagcache").description, repo.GetDescription(), "poll %d", i)
		assert.True(t, repo.GetPermissions()["admin"], "poll %d", i)
		assert.Equal(t, etagcache.ResultMiss, etagcache.ResultOf(resp.Response), "poll %d", i)
		assert.Contains(t, resp.Header.Get("Cache-Status"), "detail=credentials-below-cache", "poll %d", i)
		assert.Equal(t, gh.rate("tok-alice"), asFakeRate(goGitHubState(t, c, github.CoreCategory)), "poll %d", i)
	}
	assert.Equal(t, map[int]int{200: polls}, gh.counts())
	assertWarnedOnce(t, "go-github", lc)
}
