package redisstore

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/storetest"
)

func TestConformance(t *testing.T) {
	requireRedis(t)
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			for name, opts := range map[string][]Option{
				"local cache":    nil,
				"no local cache": {WithLocalCache(-1)},
			} {
				t.Run(name, func(t *testing.T) {
					storetest.Run(t, func(t *testing.T) etagcache.Store {
						return New(top.client(t), append(opts, WithPrefix(freshPrefix(t)))...)
					}, storetest.WithDamage(damageHeaderRecord))
				})
			}
		})
	}
}

// Two workers, each with its own Store (and local bodies), on one Redis.
func TestSharedValidatorTwoWorkers(t *testing.T) {
	requireRedis(t)
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			c, p := top.client(t), freshPrefix(t)
			storetest.RunSharedValidator(t, New(c, WithPrefix(p)), New(c, WithPrefix(p)))
		})
	}
}

// An invalidation through one worker's Store wins over another's Puts.
func TestSharedInvalidationTwoWorkers(t *testing.T) {
	requireRedis(t)
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			c, p := top.client(t), freshPrefix(t)
			storetest.RunSharedInvalidation(t, New(c, WithPrefix(p)), New(c, WithPrefix(p)))
		})
	}
}

var stores atomic.Int64

// freshPrefix is a prefix no other store on the shared servers used, so
// that each starts empty (under -count too).
func freshPrefix(t *testing.T) string {
	return fmt.Sprint(testPrefix(t), stores.Add(1), ":")
}

// damageHeaderRecord flips a bit of the header record of key and variant.
func damageHeaderRecord(t *testing.T, s etagcache.Store, key, variant string) {
	ctx := context.Background()
	st := s.(*Store)
	hk := headerKey(st.prefix, key)
	raw, err := st.c.HGet(ctx, hk, variant).Bytes()
	require.NoError(t, err)
	raw = bytes.Clone(raw)
	raw[len(raw)/2] ^= 1
	require.NoError(t, st.c.HSet(ctx, hk, variant, raw).Err())
}
