package etagcache_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// logCapture is a slog.Logger whose JSON records land in a buffer the test
// can read, safely while Transports still log from other goroutines.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newLogCapture() (*logCapture, *slog.Logger) {
	c := &logCapture{}
	return c, slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// records returns every logged record at level or above, decoded.
func (c *logCapture) records(t testing.TB, level slog.Level) []map[string]any {
	t.Helper()
	c.mu.Lock()
	text := c.buf.String()
	c.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "log line %q", line)
		var l slog.Level
		require.NoError(t, l.UnmarshalText([]byte(fmt.Sprint(rec["level"]))))
		if l >= level {
			out = append(out, rec)
		}
	}
	return out
}

// userOrigin serves a private document whose ETag names only its revision:
// every user gets the same tag, but the body depends on who asks. Such
// origins are common (the tag is a version number or a commit id), and they
// are exactly the ones where a cache that mixes users up serves one user's
// body to another, because the origin confirms the tag for everybody.
type userOrigin struct {
	*httptest.Server
	users map[string]string // bearer token prefix -> user name

	mu       sync.Mutex
	varyAuth bool // send Vary: Authorization, as GitHub does
	rev      int
	log      []originHit
	count    map[int]int // status -> responses
}

// originHit is what the origin saw and answered for one request.
type originHit struct {
	user        string
	token       string
	ifNoneMatch string
	status      int
}

// newUserOrigin starts an origin that knows the given users; a bearer token
// "tok-<user>" or "tok-<user>-<anything>" authenticates <user> (the suffix
// lets tests rotate tokens). A request without credentials is "anonymous"
// and gets the public edition, under the same tag.
func newUserOrigin(t testing.TB, users ...string) *userOrigin {
	t.Helper()
	o := &userOrigin{users: map[string]string{}, rev: 1, count: map[int]int{}}
	for _, u := range users {
		o.users["tok-"+u] = u
	}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *userOrigin) serve(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	base, _, _ := strings.Cut(strings.TrimPrefix(token, "tok-"), "-")
	user := o.users["tok-"+base]
	if token == "" {
		user = "anonymous" // gets the public edition
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	hit := originHit{user: user, token: token, ifNoneMatch: r.Header.Get("If-None-Match")}
	defer func() {
		o.log = append(o.log, hit)
		o.count[hit.status]++
	}()
	if user == "" {
		hit.status = http.StatusUnauthorized
		http.Error(w, "who are you?", hit.status)
		return
	}
	etag := fmt.Sprintf(`"rev-%d"`, o.rev)
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "private, max-age=0")
	if o.varyAuth {
		w.Header().Set("Vary", "Authorization")
	}
	if hit.ifNoneMatch == etag {
		hit.status = http.StatusNotModified
		w.WriteHeader(hit.status)
		return
	}
	hit.status = http.StatusOK
	_, _ = io.WriteString(w, userBody(user, o.rev))
}

// userBody is the private document user gets at revision rev.
func userBody(user string, rev int) string {
	return fmt.Sprintf("private data of %s at revision %d", user, rev)
}

// bump publishes the next revision and returns its number.
func (o *userOrigin) bump() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rev++
	return o.rev
}

// statuses returns how many responses of each status the origin sent.
func (o *userOrigin) statuses() map[int]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[int]int, len(o.count))
	for k, v := range o.count {
		out[k] = v
	}
	return out
}

// hits returns what the origin saw, in order.
func (o *userOrigin) hits() []originHit {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]originHit(nil), o.log...)
}

// getBody GETs url through c and returns the response (body closed) and the
// body.
func getBody(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	return doBody(t, c, req)
}
