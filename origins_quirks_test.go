//go:build linux

package etagcache_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lighttpd's default stat cache ("simple") trusts a file's stat for the
// rest of the current second: a file changed within it is served with the
// old ETag, Last-Modified and Content-Length, and the new bytes cut to that
// length. A poller through the transport keeps getting the old version
// (lighttpd answers its conditional GET with 304) until lighttpd looks
// again, never a mix; a cold cache may get, and store, the cut body under
// the old ETag, which the next poll after lighttpd looks again replaces.
// The other lighttpd tests use stat-cache-engine "disable".
func TestOriginLighttpdStatCache(t *testing.T) {
	o := startLighttpd(t, "simple")
	s := &scenario{spec: serverSpec{name: "lighttpd-statcache"}, o: o, t0: time.Now().Add(-2 * time.Hour).Truncate(time.Second)}
	const path = "/statcache.txt"
	v1, v2 := text("v1", fileSize), text("v2", fileSize+4096)
	poller := newCachingClient(t)
	s.write(t, path, v1, s.at(0))
	s.check(t, callerDefault, get(t, poller, o.url+path, callerDefault), v1)
	s.check(t, callerDefault, get(t, poller, o.url+path, callerDefault), v1)

	s.write(t, path, v2, s.at(10))
	cold := newCachingClient(t)
	g := get(t, cold, o.url+path, callerDefault)
	require.Equal(t, http.StatusOK, g.status)
	cut := g.body == v2[:len(v1)]
	require.True(t, g.body == v2 || cut, "a cold cache got neither the new version nor lighttpd's cut one: %s", diff(g.body, v2))

	deadline := time.Now().Add(3 * time.Second)
	stale := 0
	for {
		g := get(t, poller, o.url+path, callerDefault)
		require.Equal(t, http.StatusOK, g.status)
		if g.body == v2 {
			require.False(t, g.revalidated())
			break
		}
		require.True(t, g.body == v1, "the poller got neither version: %s", diff(g.body, v2))
		require.True(t, g.revalidated(), g.cacheStatus())
		stale++
		require.True(t, time.Now().Before(deadline), "lighttpd still serves the old stat after 3 s")
		<-time.After(20 * time.Millisecond) // the next poll
	}
	s.check(t, callerDefault, get(t, cold, o.url+path, callerDefault), v2)
	s.check(t, callerDefault, get(t, poller, o.url+path, callerDefault), v2)
	t.Logf("after the change: cold cache got the cut body: %v; the poller saw the old version %d times (20 ms apart)", cut, stale)
}
