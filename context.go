package etagcache

import "context"

// ctxControl is the context key of the per-request overrides, one for all
// of them so that a request's context is searched once; an unexported type,
// so no other package can collide with it. Its value is a control.
type ctxControl struct{}

// control is the set of overrides a context carries.
type control uint8

const (
	ctlWithoutStore control = 1 << iota
	ctlRefresh
	ctlOnlyIfCached
)

func controlOf(ctx context.Context) control {
	c, _ := ctx.Value(ctxControl{}).(control)
	return c
}

func withControl(ctx context.Context, c control) context.Context {
	return context.WithValue(ctx, ctxControl{}, controlOf(ctx)|c)
}

// WithoutStore returns a context under which a Transport neither reads nor
// writes its store for the request: it is sent as made, and the response
// goes to the caller untouched (Cache-Status: fwd=bypass). Unlike a request
// Cache-Control: no-store, nothing is said to the origin or to caches
// between. Under OnlyIfCached too, the request gets the cache's 504.
func WithoutStore(ctx context.Context) context.Context {
	return withControl(ctx, ctlWithoutStore)
}

// WithRefresh returns a context under which a Transport sends the request
// without validators, whatever it holds, and stores the answer in place of
// the old entry (Cache-Status: fwd=request). Use it when a stored response
// is known to be wrong.
func WithRefresh(ctx context.Context) context.Context {
	return withControl(ctx, ctlRefresh)
}

// OnlyIfCached returns a context under which a Transport never contacts the
// origin, as a request Cache-Control: only-if-cached asks (RFC 9111
// §5.2.1.7): it answers from a stored response that may be used without
// validation (fresh, or stale within the request's max-stale), and otherwise
// with a 504 Gateway Timeout made by the cache, in both modes. A HEAD is
// answered with the stored GET response's header; a request's own
// If-None-Match or If-Modified-Since is evaluated against the stored
// response (a 304 when it is false); a Range is served from the stored
// response. If-Match, If-Unmodified-Since, a request body, another method,
// WithRefresh and WithoutStore all get the 504.
func OnlyIfCached(ctx context.Context) context.Context {
	return withControl(ctx, ctlOnlyIfCached)
}

func withoutStore(ctx context.Context) bool { return controlOf(ctx)&ctlWithoutStore != 0 }
