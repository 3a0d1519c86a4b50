package redisstore

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLocalBodiesBound: the layer holds at most its bound, drops the least
// recently used body first, and keeps nothing larger than itself.
func TestLocalBodiesBound(t *testing.T) {
	l := newLocalBodies(100)
	body := func(c byte, n int) ([digestLen]byte, []byte) {
		b := bytes.Repeat([]byte{c}, n)
		return sha256.Sum256(b), b
	}
	da, a := body('a', 40)
	db, b := body('b', 40)
	dc, c := body('c', 40)
	dbig, big := body('z', 101)
	l.put(da, a)
	l.put(db, b)
	_, ok := l.get(da) // a is now the most recently used
	assert.True(t, ok)
	l.put(dc, c) // 120 bytes: b goes
	_, ok = l.get(db)
	assert.False(t, ok, "least recently used body dropped")
	for _, d := range [][digestLen]byte{da, dc} {
		_, ok = l.get(d)
		assert.True(t, ok)
	}
	l.put(dbig, big)
	_, ok = l.get(dbig)
	assert.False(t, ok, "a body larger than the layer is not kept")
	n, size := l.stats()
	assert.Equal(t, 2, n)
	assert.Equal(t, int64(80), size)

	var off *localBodies = newLocalBodies(0)
	off.put(da, a)
	_, ok = off.get(da)
	assert.False(t, ok, "a layer of size 0 is off")
}
