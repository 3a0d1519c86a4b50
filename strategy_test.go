package etagcache

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is when the test entries were received; dates in headers are relative
// to it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func date(d time.Duration) string { return t0.Add(d).Format(http.TimeFormat) }

// entryAt builds a 200 entry received at t0 (request sent 0 s before) with
// the given header fields ("Name: value" lines).
func entryAt(fields ...string) *Entry {
	h := http.Header{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, ": ")
		h.Add(k, v)
	}
	return &Entry{Status: 200, Header: h, RequestTime: t0, ResponseTime: t0}
}

func reqWith(fields ...string) requestDirectives {
	r, _ := http.NewRequest(http.MethodGet, "http://example.com/", nil)
	for _, f := range fields {
		k, v, _ := strings.Cut(f, ": ")
		r.Header.Add(k, v)
	}
	return parseRequestDirectives(r.Context(), r.Header)
}

var freshOn = freshConfig{enabled: true, heuristicFraction: defaultHeuristicFraction, heuristicCap: defaultHeuristicCap}

func TestDecide(t *testing.T) {
	etag := "Etag: \"v1\""
	const ancient = "Mon, 01 Jan 0001 00:00:00 GMT" // a zero time.Time, formatted
	const maxAge = maxDelta * time.Second
	lm := "Last-Modified: " + date(-100*time.Hour)
	cases := []struct {
		name  string
		cfg   freshConfig
		req   requestDirectives
		entry *Entry
		at    time.Duration // after t0
		want  action
		fwd   string
		ttl   time.Duration // checked when not 0
		age   time.Duration // checked when not 0
		sie   bool
	}{
		{name: "no entry: fetch", cfg: freshOn, req: reqWith(), want: actFetch},
		{name: "9111 5.2.1.7 only-if-cached, no entry: 504", cfg: freshOn, req: reqWith("Cache-Control: only-if-cached"), want: actGatewayTimeout},
		{name: "default mode: always revalidate a fresh entry", cfg: freshConfig{}, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600", "Date: "+date(0)), at: time.Second, want: actRevalidate, fwd: "stale"},
		{name: "default mode: no validator, fetch", cfg: freshConfig{}, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=3600"), want: actFetch},
		{name: "default mode: response stale-if-error ignored", cfg: freshConfig{}, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1, stale-if-error=60"), at: 10 * time.Second, want: actRevalidate, sie: false},
		{name: "default mode: WithStaleIfError window applies", cfg: freshConfig{staleIfError: time.Minute}, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1"), at: 10 * time.Second, want: actRevalidate, sie: true},
		{name: "9111 4.2.1 max-age fresh: serve", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600", "Date: "+date(0)), at: 100 * time.Second, want: actServe, ttl: 3500 * time.Second, age: 100 * time.Second},
		{name: "9111 4.2.1 max-age stale: revalidate", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=60"), at: 61 * time.Second, want: actRevalidate, fwd: "stale", ttl: -time.Second},
		{name: "9111 4.2.1 max-age leading zeros", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=003600"), at: time.Minute, want: actServe},
		{name: "9111 4.2.1 max-age quoted", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=\"3600\""), at: time.Minute, want: actServe},
		{name: "9111 4.2.1 rule 17 invalid max-age is stale", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age='3600'"), at: time.Second, want: actRevalidate},
		{name: "9111 4.2.1 rule 17 invalid max-age 3600a is stale", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600a"), at: time.Second, want: actRevalidate},
		{name: "9111 4.2.1 rule 17 duplicate max-age: most restrictive", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600", "Cache-Control: max-age=1"), at: 10 * time.Second, want: actRevalidate},
		{name: "9111 5.2 max-age inside a quoted extension is not max-age", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, `Cache-Control: extension="max-age=3600", max-age=1`), at: 10 * time.Second, want: actRevalidate},
		{name: "9111 5.2 directive names are case-insensitive", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: MAX-AGE=3600"), at: time.Minute, want: actServe},
		{name: "9111 5.2.3 unknown directives ignored", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: foo, max-age=3600, bar=\"x,y\""), at: time.Minute, want: actServe},
		{name: "9111 4.2.1 max-age wins over Expires", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=3600", "Expires: "+date(-time.Hour), "Date: "+date(0)), at: time.Minute, want: actServe},
		{name: "9111 4.2.1 Expires minus Date", cfg: freshOn, req: reqWith(),
			entry: entryAt("Expires: "+date(time.Hour), "Date: "+date(0)), at: time.Minute, want: actServe, ttl: 59 * time.Minute},
		{name: "9111 4.2.1 Expires past: stale", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Expires: "+date(time.Minute), "Date: "+date(0)), at: 2 * time.Minute, want: actRevalidate},
		{name: "9111 5.3 invalid Expires is expired", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Expires: 0", "Date: "+date(0)), at: time.Second, want: actRevalidate},
		{name: "9111 5.3 two Expires lines are invalid", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Expires: "+date(time.Hour), "Expires: "+date(time.Hour), "Date: "+date(0)), at: time.Second, want: actRevalidate},
		{name: "9111 4.2 date parsed case-insensitively", cfg: freshOn, req: reqWith(),
			entry: entryAt("Expires: "+strings.ToUpper(date(time.Hour)), "Date: "+date(0)), at: time.Minute, want: actServe},
		{name: "9110 5.6.7 RFC 850 date accepted", cfg: freshOn, req: reqWith(),
			entry: entryAt("Expires: "+t0.Add(time.Hour).Format("Monday, 02-Jan-06 15:04:05 GMT"), "Date: "+date(0)), at: time.Minute, want: actServe},
		{name: "9111 4.2.1 Expires without Date uses response time", cfg: freshOn, req: reqWith(),
			entry: entryAt("Expires: " + date(time.Hour)), at: time.Minute, want: actServe, ttl: 59 * time.Minute},
		{name: "9111 4.2.3 received Age counts", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600", "Age: 3590", "Date: "+date(0)), at: 20 * time.Second, want: actRevalidate, age: 3610 * time.Second},
		{name: "9111 4.2.3 apparent age from an old Date", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600", "Date: "+date(-2*time.Hour)), at: 0, want: actRevalidate, age: 2 * time.Hour},
		{name: "9111 4.2.3 a Date in the future does not make age negative", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=60", "Date: "+date(time.Hour)), at: 30 * time.Second, want: actServe, age: 30 * time.Second},
		{name: "9111 1.2.2 an ancient Date saturates the age at 2^31 s", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=0", "Date: "+ancient), at: time.Second, want: actRevalidate, age: maxAge, ttl: -maxAge},
		{name: "9111 1.2.2 an ancient Date with a long max-age: stale", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=2147483648", "Date: "+ancient), at: time.Second, want: actRevalidate, age: maxAge},
		{name: "9111 1.2.2 Expires minus an ancient Date saturates too", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Expires: Fri, 31 Dec 9999 23:59:59 GMT", "Date: "+ancient), at: time.Second, want: actRevalidate, age: maxAge},
		{name: "9111 1.2.2 Expires far ahead of Date: fresh", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Expires: Fri, 31 Dec 9999 23:59:59 GMT", "Date: "+date(0)), at: time.Hour, want: actServe, age: time.Hour, ttl: maxAge - time.Hour},
		{name: "9111 1.2.2 a received Age of 2^31 s stays there", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=60", "Age: 99999999999", "Date: "+date(0)), at: 100 * 365 * 24 * time.Hour, want: actRevalidate, age: maxAge},
		{name: "9111 1.2.2 an entry without request and response times", cfg: freshOn, req: reqWith(),
			entry: func() *Entry {
				e := entryAt(etag, "Cache-Control: max-age=3600", "Age: 10", "Date: "+date(0))
				e.RequestTime, e.ResponseTime = time.Time{}, time.Time{}
				return e
			}(), at: 0, want: actRevalidate, age: maxAge},
		{name: "9111 1.2.2 a request time centuries before the response", cfg: freshOn, req: reqWith(),
			entry: func() *Entry {
				e := entryAt(etag, "Cache-Control: max-age=3600", "Age: 10", "Date: "+date(0))
				e.RequestTime = time.Time{}
				return e
			}(), at: 0, want: actRevalidate, age: maxAge},
		{name: "9111 4.2.2 a heuristic from an ancient Last-Modified is capped", cfg: freshOn, req: reqWith(),
			entry: entryAt("Last-Modified: "+ancient, "Date: "+date(0)), at: time.Hour, want: actServe, ttl: 23 * time.Hour},
		{name: "9111 1.2.2 a heuristic past any duration saturates", cfg: freshConfig{enabled: true, heuristicFraction: 2}, req: reqWith(),
			entry: entryAt("Last-Modified: "+ancient, "Date: "+date(0)), at: time.Hour, want: actServe, ttl: maxAge - time.Hour},
		{name: "9111 5.1 list-valued Age: first member", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=3600", "Age: 100, 5000", "Date: "+date(0)), at: 0, want: actServe, age: 100 * time.Second},
		{name: "9111 5.1 invalid Age ignored", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=3600", "Age: abc", "Date: "+date(0)), at: 10 * time.Second, want: actServe, age: 10 * time.Second},
		{name: "9111 4.2.3 response delay is added to Age", cfg: freshOn, req: reqWith(),
			entry: func() *Entry {
				e := entryAt("Cache-Control: max-age=3600", "Age: 10", "Date: "+date(0))
				e.RequestTime = t0.Add(-5 * time.Second)
				return e
			}(), at: 0, want: actServe, age: 15 * time.Second},
		{name: "9111 4.2.2 heuristic: 10% of Date minus Last-Modified", cfg: freshOn, req: reqWith(),
			entry: entryAt(lm, "Date: "+date(0)), at: 9 * time.Hour, want: actServe, ttl: time.Hour},
		{name: "9111 4.2.2 heuristic capped at a day", cfg: freshOn, req: reqWith(),
			entry: entryAt("Last-Modified: "+date(-1000*24*time.Hour), "Date: "+date(0)), at: 25 * time.Hour, want: actRevalidate},
		{name: "9111 4.2.2 no heuristic with explicit expiry", cfg: freshOn, req: reqWith(),
			entry: entryAt(lm, "Cache-Control: max-age=0", "Date: "+date(0)), at: time.Second, want: actRevalidate},
		{name: "9111 4.2.2 no heuristic for a 500", cfg: freshOn, req: reqWith(),
			entry: func() *Entry { e := entryAt(lm, "Date: "+date(0)); e.Status = 500; return e }(), at: time.Second, want: actRevalidate},
		{name: "9111 4.2.2 heuristic for a 404", cfg: freshOn, req: reqWith(),
			entry: func() *Entry { e := entryAt(lm, "Date: "+date(0)); e.Status = 404; return e }(), at: time.Second, want: actServe},
		{name: "9111 5.2.2.4 response no-cache: revalidate while fresh", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600, no-cache"), at: time.Second, want: actRevalidate, fwd: "stale"},
		{name: "9111 5.2.2.4 qualified no-cache: fields stripped, rest reused", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, `Cache-Control: max-age=3600, no-cache="Set-Cookie"`), at: time.Second, want: actServe},
		{name: "9111 5.2.2.2 must-revalidate fresh: serve", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600, must-revalidate"), at: time.Second, want: actServe},
		{name: "9111 5.2.2.2 must-revalidate stale: no stale-if-error", cfg: freshConfig{enabled: true, staleIfError: time.Hour}, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1, must-revalidate, stale-if-error=600"), at: 10 * time.Second, want: actRevalidate, sie: false},
		{name: "9111 5.2.2.7 private: a private cache reuses it", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: private, max-age=3600"), at: time.Second, want: actServe},
		{name: "9111 5.2.2.10 s-maxage ignored by a private cache", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: s-maxage=3600"), at: time.Second, want: actRevalidate},
		{name: "9111 5.2.2.8 proxy-revalidate ignored by a private cache", cfg: freshOn, req: reqWith("Cache-Control: max-stale=600"),
			entry: entryAt(etag, "Cache-Control: max-age=1, proxy-revalidate"), at: 10 * time.Second, want: actServe},
		{name: "8246 immutable fresh: serve", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=3600, immutable"), at: time.Second, want: actServe},
		{name: "8246 immutable fresh ignores request max-age=0 (reload)", cfg: freshOn, req: reqWith("Cache-Control: max-age=0"),
			entry: entryAt(etag, "Cache-Control: max-age=3600, immutable"), at: time.Second, want: actServe},
		{name: "8246 immutable fresh: request no-cache (forced reload) revalidates", cfg: freshOn, req: reqWith("Cache-Control: no-cache"),
			entry: entryAt(etag, "Cache-Control: max-age=3600, immutable"), at: time.Second, want: actRevalidate, fwd: "request"},
		{name: "8246 immutable stale: revalidate", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=2, immutable"), at: 3 * time.Second, want: actRevalidate},
		{name: "9111 5.2.1.4 request no-cache: revalidate", cfg: freshOn, req: reqWith("Cache-Control: no-cache"),
			entry: entryAt(etag, "Cache-Control: max-age=3600"), at: time.Second, want: actRevalidate, fwd: "request"},
		{name: "9111 5.4 Pragma: no-cache without Cache-Control", cfg: freshOn, req: reqWith("Pragma: no-cache"),
			entry: entryAt(etag, "Cache-Control: max-age=3600"), at: time.Second, want: actRevalidate, fwd: "request"},
		{name: "9111 5.4 Pragma ignored when Cache-Control is present", cfg: freshOn, req: reqWith("Pragma: no-cache", "Cache-Control: max-age=3600"),
			entry: entryAt(etag, "Cache-Control: max-age=3600"), at: time.Second, want: actServe},
		{name: "9111 5.2.1.1 request max-age older than allowed", cfg: freshOn, req: reqWith("Cache-Control: max-age=10"),
			entry: entryAt(etag, "Cache-Control: max-age=3600"), at: 20 * time.Second, want: actRevalidate, fwd: "request"},
		{name: "9111 5.2.1.1 request max-age satisfied", cfg: freshOn, req: reqWith("Cache-Control: max-age=30"),
			entry: entryAt(etag, "Cache-Control: max-age=3600"), at: 20 * time.Second, want: actServe},
		{name: "9111 5.2.1.3 request min-fresh not met", cfg: freshOn, req: reqWith("Cache-Control: min-fresh=100"),
			entry: entryAt(etag, "Cache-Control: max-age=60"), at: 0, want: actRevalidate, fwd: "request"},
		{name: "9111 5.2.1.3 request min-fresh met", cfg: freshOn, req: reqWith("Cache-Control: min-fresh=10"),
			entry: entryAt(etag, "Cache-Control: max-age=60"), at: 0, want: actServe},
		{name: "9111 5.2.1.2 request max-stale within", cfg: freshOn, req: reqWith("Cache-Control: max-stale=100"),
			entry: entryAt(etag, "Cache-Control: max-age=60"), at: 100 * time.Second, want: actServe, ttl: -40 * time.Second},
		{name: "9111 5.2.1.2 request max-stale exceeded", cfg: freshOn, req: reqWith("Cache-Control: max-stale=10"),
			entry: entryAt(etag, "Cache-Control: max-age=60"), at: 100 * time.Second, want: actRevalidate},
		{name: "9111 5.2.1.2 bare max-stale: any staleness", cfg: freshOn, req: reqWith("Cache-Control: max-stale"),
			entry: entryAt(etag, "Cache-Control: max-age=60"), at: 100 * time.Hour, want: actServe},
		{name: "9111 4.2.4 max-stale does not override must-revalidate", cfg: freshOn, req: reqWith("Cache-Control: max-stale"),
			entry: entryAt(etag, "Cache-Control: max-age=60, must-revalidate"), at: 100 * time.Second, want: actRevalidate},
		{name: "9111 5.2.1.7 only-if-cached, fresh: serve", cfg: freshOn, req: reqWith("Cache-Control: only-if-cached"),
			entry: entryAt("Cache-Control: max-age=60"), at: time.Second, want: actServe},
		{name: "9111 5.2.1.7 only-if-cached, stale: 504", cfg: freshOn, req: reqWith("Cache-Control: only-if-cached"),
			entry: entryAt(etag, "Cache-Control: max-age=60"), at: time.Hour, want: actGatewayTimeout},
		{name: "default mode: a request's only-if-cached goes to the origin as before", cfg: freshConfig{}, req: reqWith("Cache-Control: only-if-cached"),
			entry: entryAt(etag, "Cache-Control: max-age=60"), at: time.Second, want: actRevalidate},
		{name: "5861 3 stale-while-revalidate window: serve stale", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1, stale-while-revalidate=60"), at: 30 * time.Second, want: actServeStale, ttl: -29 * time.Second},
		{name: "5861 3 after the stale-while-revalidate window: revalidate", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1, stale-while-revalidate=4"), at: 10 * time.Second, want: actRevalidate},
		{name: "5861 3 stale-while-revalidate without validators: fetch", cfg: freshOn, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=1, stale-while-revalidate=60"), at: 10 * time.Second, want: actFetch},
		{name: "5861 3 stale-while-revalidate yields to must-revalidate", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1, stale-while-revalidate=60, must-revalidate"), at: 10 * time.Second, want: actRevalidate},
		{name: "5861 4 stale-if-error within the window", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1, stale-if-error=60"), at: 30 * time.Second, want: actRevalidate, sie: true},
		{name: "5861 4 stale-if-error past the window", cfg: freshOn, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1, stale-if-error=60"), at: 90 * time.Second, want: actRevalidate, sie: false},
		{name: "5861 4 request stale-if-error", cfg: freshOn, req: reqWith("Cache-Control: stale-if-error=600"),
			entry: entryAt(etag, "Cache-Control: max-age=1"), at: 90 * time.Second, want: actRevalidate, sie: true},
		{name: "5861 4 configured window for origins that send none", cfg: freshConfig{enabled: true, staleIfError: time.Hour}, req: reqWith(),
			entry: entryAt("Cache-Control: max-age=1"), at: 30 * time.Minute, want: actFetch, sie: true},
		{name: "5861 4 response window wins over the configured one", cfg: freshConfig{enabled: true, staleIfError: time.Hour}, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: max-age=1, stale-if-error=10"), at: 30 * time.Minute, want: actRevalidate, sie: false},
		{name: "5861 4 no-cache forbids stale-if-error", cfg: freshConfig{enabled: true, staleIfError: time.Hour}, req: reqWith(),
			entry: entryAt(etag, "Cache-Control: no-cache"), at: time.Second, want: actRevalidate, sie: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := decide(c.req, c.entry, t0.Add(c.at), c.cfg)
			assert.Equal(t, c.want.String(), d.action.String())
			if c.fwd != "" {
				assert.Equal(t, c.fwd, d.fwd)
			}
			if c.ttl != 0 {
				assert.Equal(t, c.ttl, d.ttl)
			}
			if c.age != 0 {
				assert.Equal(t, c.age, d.age)
			}
			assert.Equal(t, c.sie, d.staleIfError, "stale-if-error")
		})
	}
}

func TestDecideContextOverrides(t *testing.T) {
	e := entryAt(`Etag: "v1"`, "Cache-Control: max-age=3600")
	get := func(ctx context.Context) requestDirectives {
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.com/", nil)
		require.NoError(t, err)
		return parseRequestDirectives(r.Context(), r.Header)
	}
	d := decide(get(WithRefresh(context.Background())), e, t0.Add(time.Second), freshOn)
	assert.Equal(t, actFetch, d.action, "WithRefresh fetches a fresh entry anew")
	assert.Equal(t, "request", d.fwd)

	d = decide(get(OnlyIfCached(context.Background())), nil, t0, freshOn)
	assert.Equal(t, actGatewayTimeout, d.action, "OnlyIfCached without an entry")
	d = decide(get(OnlyIfCached(context.Background())), e, t0.Add(time.Second), freshOn)
	assert.Equal(t, actServe, d.action, "OnlyIfCached with a fresh entry")
	d = decide(get(OnlyIfCached(context.Background())), e, t0.Add(time.Second), freshConfig{})
	assert.Equal(t, actServe, d.action, "OnlyIfCached works in the default mode too")
	d = decide(get(OnlyIfCached(context.Background())), e, t0.Add(2*time.Hour), freshConfig{})
	assert.Equal(t, actGatewayTimeout, d.action, "but only with a response usable without the origin")
	d = decide(get(OnlyIfCached(WithRefresh(context.Background()))), e, t0.Add(time.Second), freshOn)
	assert.Equal(t, actGatewayTimeout, d.action, "OnlyIfCached with WithRefresh: the entry is wrong and the origin may not be asked")
	d = decide(get(OnlyIfCached(WithRefresh(context.Background()))), nil, t0, freshConfig{})
	assert.Equal(t, actGatewayTimeout, d.action)
}

// RFC 9111 §4.3.2, RFC 9110 §13: a request that may not reach the origin
// has its own preconditions evaluated against the stored response, when
// it may evaluate them.
func TestPreconditionAnswer(t *testing.T) {
	lm := "Last-Modified: " + date(-time.Hour)
	cases := []struct {
		name   string
		req    []string
		entry  *Entry
		head   bool
		status int
	}{
		{"no precondition", nil, entryAt(`Etag: "v1"`), false, 200},
		{"9110 13.1.2 If-None-Match lists the tag", []string{`If-None-Match: "v0", "v1"`}, entryAt(`Etag: "v1"`), false, 304},
		{"9110 13.1.2 weak comparison", []string{`If-None-Match: "v1"`}, entryAt(`Etag: W/"v1"`), false, 304},
		{"9110 13.1.2 a comma inside a tag", []string{`If-None-Match: "a,b"`}, entryAt(`Etag: "a,b"`), false, 304},
		{"9110 13.1.2 part of a tag is not the tag", []string{`If-None-Match: "a,b"`}, entryAt(`Etag: "a"`), false, 200},
		{"9110 13.1.2 field lines add up", []string{`If-None-Match: "v0"`, `If-None-Match: W/"v1"`}, entryAt(`Etag: "v1"`), false, 304},
		{"9110 13.1.2 *", []string{`If-None-Match: *`}, entryAt(), false, 304},
		{"9110 13.1.2 another tag", []string{`If-None-Match: "v2"`}, entryAt(`Etag: "v1"`), false, 200},
		{"9110 13.1.2 no stored tag", []string{`If-None-Match: "v1"`}, entryAt(lm), false, 200},
		{"9110 13.1.2 malformed", []string{`If-None-Match: v1`}, entryAt(`Etag: "v1"`), false, 200},
		{"9110 13.1.2 HEAD", []string{`If-None-Match: "v1"`}, entryAt(`Etag: "v1"`), true, 304},
		{"9110 13.1.3 not modified since", []string{"If-Modified-Since: " + date(-time.Hour)}, entryAt(lm), false, 304},
		{"9110 13.1.3 modified since", []string{"If-Modified-Since: " + date(-2*time.Hour)}, entryAt(lm), false, 200},
		{"9111 4.3.2 no Last-Modified: Date", []string{"If-Modified-Since: " + date(0)}, entryAt("Date: " + date(0)), false, 304},
		{"9111 4.3.2 no Last-Modified: Date, modified", []string{"If-Modified-Since: " + date(-time.Second)}, entryAt("Date: " + date(0)), false, 200},
		{"9110 13.1.3 an invalid date is ignored", []string{"If-Modified-Since: yesterday"}, entryAt(lm), false, 200},
		{"9110 13.1.3 two members are ignored", []string{"If-Modified-Since: " + date(0), "If-Modified-Since: " + date(0)}, entryAt(lm), false, 200},
		{"9110 13.1.3 If-None-Match wins", []string{`If-None-Match: "v2"`, "If-Modified-Since: " + date(0)}, entryAt(lm, `Etag: "v1"`), false, 200},
		{"9111 4.3.2 If-Match is the origin's", []string{`If-Match: "v1"`}, entryAt(`Etag: "v1"`), false, 504},
		{"9111 4.3.2 If-Unmodified-Since is the origin's", []string{"If-Unmodified-Since: " + date(0)}, entryAt(lm), false, 504},
		{"9110 13.2.2 a Range after a true precondition", []string{`If-None-Match: "v2"`, "Range: bytes=0-1"}, entryAt(`Etag: "v1"`), false, 504},
		{"9110 13.2.2 a Range after a false If-None-Match", []string{`If-None-Match: "v1"`, "Range: bytes=0-1"}, entryAt(`Etag: "v1"`), false, 304},
		{"9110 14.2 a HEAD ignores Range", []string{"Range: bytes=0-1", `If-Range: "v1"`}, entryAt(`Etag: "v1"`), true, 200},
		{"9110 13.2.1 a 404 ignores preconditions", []string{`If-Match: "v1"`}, func() *Entry { e := entryAt(`Etag: "v1"`); e.Status = 404; return e }(), false, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for _, f := range c.req {
				k, v, _ := strings.Cut(f, ": ")
				h.Add(k, v)
			}
			assert.Equal(t, c.status, preconditionAnswer(h, c.entry.Status, factsOf(c.entry), !c.head))
		})
	}
}

func TestOriginError(t *testing.T) {
	for status := 100; status < 600; status++ {
		want := status == 500 || status == 502 || status == 503 || status == 504
		assert.Equal(t, want, originError(status), "5861 4: %d", status)
	}
}

func TestParseCacheControl(t *testing.T) {
	h := http.Header{"Cache-Control": {`No-Cache="Set-Cookie, X-A", max-stale , min-fresh=5`, `stale-while-revalidate=3, STALE-IF-ERROR=4, x="a,max-age=1"`, "max-age=99999999999"}}
	cc := parseCacheControl(h)
	assert.False(t, cc.noCache, "qualified no-cache is not the bare one")
	assert.Equal(t, []string{"Set-Cookie", "X-A"}, cc.noCacheFields)
	assert.Equal(t, int64(maxDelta), cc.maxStale)
	assert.Equal(t, int64(5), cc.minFresh)
	assert.Equal(t, int64(3), cc.staleWhileRevalidate)
	assert.Equal(t, int64(4), cc.staleIfError)
	assert.Equal(t, int64(maxDelta), cc.maxAge, "9111 1.2.2 overflow reads as 2^31")

	for _, v := range []string{"max-age =3600", "max-age= 3600", "max-age=-1", "max-age=3600.0", "max-age="} {
		assert.LessOrEqual(t, parseCacheControl(http.Header{"Cache-Control": {v}}).maxAge, int64(0), v)
	}
	assert.Equal(t, int64(-1), parseCacheControl(http.Header{}).maxAge)
}

func TestHTTPDate(t *testing.T) {
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	for _, v := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "sun, 06 nov 1994 08:49:37 gmt", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "SUN, 06 NOV 1994 08:49:37 gMT"} {
		got, ok := httpDate(v)
		require.True(t, ok, v)
		assert.True(t, want.Equal(got), v)
	}
	for _, v := range []string{"", "0", "-1", "yesterday", "Sun, 06 Nov 1994 08:49:37",
		"Thu, 18 Aug 2050 02:01:18 UTC", "Thu, 18 Aug 2050 02:01:18 AEST", "Thu, 18 Aug 50 02:01:18 GMT",
		"Thu 18 Aug 2050 02:01:18 GMT", "Thu, 18  Aug  2050 02:01:18 GMT", "Thu, 18-Aug-2050 02:01:18 GMT",
		"Thu, 18 Aug 2050 02.01.18 GMT", "Thu, 18 Aug 2050 2:01:18 GMT"} { // cache-tests expires-parse
		_, ok := httpDate(v)
		assert.False(t, ok, v)
	}
}
