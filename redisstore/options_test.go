package redisstore

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The module's rule for zero values: 0 (or "") means the default, a
// negative size or duration means no limit, or off.
func TestOptionZeroValues(t *testing.T) {
	def := New(nil)
	assert.Equal(t, DefaultPrefix, def.prefix)
	assert.NotNil(t, def.local)
	assert.Equal(t, int64(DefaultLocalCache), def.local.max)
	assert.Zero(t, def.ttl)

	zero := New(nil, WithPrefix(""), WithLocalCache(0), WithTTL(0))
	assert.Equal(t, DefaultPrefix, zero.prefix)
	assert.NotNil(t, zero.local, "WithLocalCache(0) is the default size, not off")
	assert.Equal(t, int64(DefaultLocalCache), zero.local.max)
	assert.Zero(t, zero.ttl)

	neg := New(nil, WithLocalCache(-1), WithTTL(-time.Second))
	assert.Nil(t, neg.local, "a negative size turns the local layer off")
	assert.Zero(t, neg.ttl, "a negative TTL is no expiry")

	set := New(nil, WithPrefix("p:"), WithLocalCache(1<<20), WithTTL(time.Minute))
	assert.Equal(t, "p:", set.prefix)
	assert.Equal(t, int64(1<<20), set.local.max)
	assert.Equal(t, time.Minute, set.ttl)
}
