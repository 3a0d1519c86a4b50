package etagcache

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// boltFlush writes the store's queued Puts now.
func boltFlush(t testing.TB, s *BoltStore) {
	t.Helper()
	require.NoError(t, s.commit(context.Background(), nil))
}

// boltMaxWait is the longest the store waited for the lock file.
func boltMaxWait(s *BoltStore) time.Duration { return time.Duration(s.maxWait.Load()) }
