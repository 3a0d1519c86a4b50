package etagcache_test

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGitHub is a small stand-in for the GitHub REST API, faithful in what a
// validator cache meets there:
//   - a weak ETag on a 200 (W/"…") and the same tag strong on the 304 ("…"),
//     plus Last-Modified; If-None-Match wins over If-Modified-Since;
//   - Vary on two lines, as GitHub sends it: "Accept, Authorization, Cookie,
//     X-GitHub-OTP" and "Accept-Encoding, Accept, X-Requested-With";
//   - Cache-Control: private, max-age=60, s-maxage=60;
//   - gzip when the request accepts it (Go's transport asks and decodes);
//   - X-RateLimit-Limit/Remaining/Reset/Used/Resource on every response, a
//     budget per user (not per token) where a 200 costs one unit and a 304 costs none;
//     once the budget is spent, a request that would cost a unit gets 403
//     (the fake's model: a free 304 is still answered);
//   - a body that depends on the user (permissions), so tags differ per user.
//
// Endpoints, under /api/v3 as for GitHub Enterprise: GET /repos/{owner}/{repo}
// and GET /rate_limit (free, no validators).
type fakeGitHub struct {
	*httptest.Server
	limit int
	reset int64 // unix seconds, the same for every token

	mu       sync.Mutex
	users    map[string]string // token -> login
	used     map[string]int    // login -> units used in this window
	repos    map[string]*fakeRepo
	statuses map[int]int
	requests int
}

// fakeRepo is one repository; version counts its changes.
type fakeRepo struct {
	id          int64
	owner, name string
	version     int
	description string
}

// ghEpoch anchors every timestamp the fake serves, so they are reproducible.
var ghEpoch = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func newFakeGitHub(t testing.TB) *fakeGitHub {
	t.Helper()
	g := &fakeGitHub{
		limit:    5000,
		reset:    time.Now().Add(time.Hour).Unix(),
		users:    map[string]string{},
		used:     map[string]int{},
		repos:    map[string]*fakeRepo{},
		statuses: map[int]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v3/repos/{owner}/{repo}", g.getRepo)
	mux.HandleFunc("GET /api/v3/rate_limit", g.rateLimit)
	g.Server = httptest.NewServer(mux)
	t.Cleanup(g.Close)
	return g
}

// addUser lets token authenticate login.
func (g *fakeGitHub) addUser(token, login string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users[token] = login
}

// addRepo creates owner/name at version 1.
func (g *fakeGitHub) addRepo(owner, name, description string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.repos[owner+"/"+name] = &fakeRepo{id: int64(1000 + len(g.repos)), owner: owner, name: name,
		version: 1, description: description}
}

// update changes owner/name's description and moves its updated_at.
func (g *fakeGitHub) update(owner, name, description string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.repos[owner+"/"+name]
	r.version++
	r.description = description
}

// repo returns a copy of owner/name as it is now.
func (g *fakeGitHub) repo(owner, name string) fakeRepo {
	g.mu.Lock()
	defer g.mu.Unlock()
	return *g.repos[owner+"/"+name]
}

// spend charges n units to token's user, as another process of the same
// user would: GitHub's budget is per user (or App installation), shared by
// all of their clients and tokens.
func (g *fakeGitHub) spend(token string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.used[g.users[token]] += n
}

// fakeRate is the origin's rate-limit counters for one token.
type fakeRate struct {
	Limit, Remaining, Used int
	Reset                  int64
	Resource               string
}

// rate returns the counters of token's user as the origin holds them now.
func (g *fakeGitHub) rate(token string) fakeRate {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rateLocked(token)
}

func (g *fakeGitHub) rateLocked(token string) fakeRate {
	used := g.used[g.users[token]]
	return fakeRate{Limit: g.limit, Remaining: g.limit - used, Used: used, Reset: g.reset, Resource: "core"}
}

// counts returns how many responses of each status the fake sent.
func (g *fakeGitHub) counts() map[int]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[int]int, len(g.statuses))
	for k, v := range g.statuses {
		out[k] = v
	}
	return out
}

// updatedAt is when a repository reached version v.
func updatedAt(v int) time.Time { return ghEpoch.Add(time.Duration(v) * time.Minute) }

// repoJSON is the body GitHub would send login for r: permissions differ
// per user, so the body (and its tag) does too.
func repoJSON(r *fakeRepo, login string) []byte {
	admin := login == r.owner
	b, _ := json.Marshal(map[string]any{
		"id":               r.id,
		"node_id":          fmt.Sprintf("R_%d", r.id),
		"name":             r.name,
		"full_name":        r.owner + "/" + r.name,
		"private":          true,
		"owner":            map[string]any{"login": r.owner, "type": "Organization"},
		"description":      r.description,
		"stargazers_count": 10 * r.version,
		"updated_at":       updatedAt(r.version).Format(time.RFC3339),
		"pushed_at":        updatedAt(r.version).Format(time.RFC3339),
		"permissions":      map[string]bool{"admin": admin, "push": admin, "pull": true},
	})
	return b
}

func (g *fakeGitHub) getRepo(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	token, login, ok := g.auth(w, r)
	if !ok {
		return
	}
	repo := g.repos[r.PathValue("owner")+"/"+r.PathValue("repo")]
	if repo == nil {
		g.reply(w, token, http.StatusNotFound, []byte(`{"message":"Not Found"}`), r)
		return
	}
	body := repoJSON(repo, login)
	sum := sha256.Sum256(body)
	tag := `"` + hex.EncodeToString(sum[:16]) + `"`
	lastModified := updatedAt(repo.version).Format(http.TimeFormat)

	h := w.Header()
	h.Add("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
	h.Add("Vary", "Accept-Encoding, Accept, X-Requested-With")
	h.Set("Cache-Control", "private, max-age=60, s-maxage=60")
	h.Set("Last-Modified", lastModified)
	if notModified(r, tag, repo.version) {
		h.Set("ETag", tag) // strong on the 304, as GitHub does
		g.reply(w, token, http.StatusNotModified, nil, r)
		return
	}
	h.Set("ETag", "W/"+tag)
	g.reply(w, token, http.StatusOK, body, r)
}

// notModified evaluates If-None-Match (weak comparison) or, without it,
// If-Modified-Since, as RFC 9110 §13.2.2 orders them.
func notModified(r *http.Request, tag string, version int) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			if strings.TrimPrefix(strings.TrimSpace(t), "W/") == tag {
				return true
			}
		}
		return false
	}
	ims, err := http.ParseTime(r.Header.Get("If-Modified-Since"))
	return err == nil && !updatedAt(version).Truncate(time.Second).After(ims)
}

func (g *fakeGitHub) rateLimit(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	token, _, ok := g.auth(w, r)
	if !ok {
		return
	}
	rt := g.rateLocked(token)
	core := map[string]any{"limit": rt.Limit, "remaining": rt.Remaining, "used": rt.Used,
		"reset": rt.Reset, "resource": rt.Resource}
	body, _ := json.Marshal(map[string]any{"resources": map[string]any{"core": core}, "rate": core})
	w.Header().Set("Cache-Control", "no-cache")
	g.reply(w, token, http.StatusOK, body, r) // free, like GitHub's
}

// auth resolves the bearer token; it answers 401 itself when it fails.
// Called with g.mu held.
func (g *fakeGitHub) auth(w http.ResponseWriter, r *http.Request) (token, login string, ok bool) {
	token = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	login, ok = g.users[token]
	if !ok {
		g.reply(w, "", http.StatusUnauthorized, []byte(`{"message":"Bad credentials"}`), r)
	}
	return token, login, ok
}

// reply charges a 200 to the budget of token's user (a 304 and /rate_limit are free),
// refuses a 200 with 403 when the budget is spent, sets the rate-limit fields and
// writes body, gzipped when the request accepts gzip. Called with g.mu held.
func (g *fakeGitHub) reply(w http.ResponseWriter, token string, status int, body []byte, r *http.Request) {
	g.requests++
	h := w.Header()
	if token != "" {
		costs := status == http.StatusOK && r.URL.Path != "/api/v3/rate_limit"
		switch {
		case costs && g.used[g.users[token]] >= g.limit:
			status, body = http.StatusForbidden, []byte(`{"message":"API rate limit exceeded"}`)
			h.Del("ETag")
		case costs:
			g.used[g.users[token]]++
		}
		rt := g.rateLocked(token)
		h.Set("X-RateLimit-Limit", strconv.Itoa(rt.Limit))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(rt.Remaining))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(rt.Reset, 10))
		h.Set("X-RateLimit-Used", strconv.Itoa(rt.Used))
		h.Set("X-RateLimit-Resource", rt.Resource)
	}
	h.Set("X-GitHub-Request-Id", fmt.Sprintf("FAKE:%d", g.requests))
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	g.statuses[status]++
	if status == http.StatusNotModified || len(body) == 0 {
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	h.Set("Content-Encoding", "gzip")
	w.WriteHeader(status)
	zw := gzip.NewWriter(w)
	_, _ = zw.Write(body)
	_ = zw.Close()
}
