package main

import (
	"log/slog"
	"net/http"

	"github.com/etagcache/etagcache"
)

func options(freshness bool, base http.RoundTripper, log *slog.Logger) []etagcache.Option {
	return []etagcache.Option{etagcache.WithBase(base), etagcache.WithLogger(log)}
}
