package etagcache

import (
	"testing"
	"time"
)

func boltFlush(t testing.TB, s *BoltStore) {}
func boltMaxWait(s *BoltStore) time.Duration { return 0 }
