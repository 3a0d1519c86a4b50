package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/etagcache/etagcache"
)

func options(freshness bool, staleIfError time.Duration, oneUser bool, base http.RoundTripper, log *slog.Logger) []etagcache.Option {
	opts := []etagcache.Option{etagcache.WithBase(base), etagcache.WithLogger(log),
		etagcache.WithFreshness(freshness), etagcache.WithStaleIfError(staleIfError)}
	if oneUser {
		opts = append(opts, etagcache.WithPartition(func(*http.Request) string { return "" }))
	}
	return opts
}
