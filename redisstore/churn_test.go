package redisstore

// The churn test on Redis (internal/churntest says what is checked): a
// redis-server of its own, and each worker its own client and Store on one
// prefix, as the processes of a fleet. The workers share this machine's
// clock, so they need no margin for clock skew; with one, the resources,
// invalidated every few milliseconds, would hardly ever be stored.

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/internal/churntest"
)

func TestChurn(t *testing.T) {
	requireRedis(t)
	port, err := freePort()
	require.NoError(t, err)
	srv, err := startRedis(t.TempDir(), port)
	require.NoError(t, err)
	t.Cleanup(srv.Kill)
	for _, m := range []struct {
		name  string
		fresh bool
	}{{"default", false}, {"fresh", true}} {
		t.Run(m.name, func(t *testing.T) {
			prefix := "churn:" + m.name + ":"
			churntest.Run(t, churntest.Config{Fresh: m.fresh}, func(int) etagcache.Store {
				return New(newSingleClient(t, srv.Addr, calmTimeout), WithPrefix(prefix), WithClockSkew(-1))
			})
		})
	}
}
