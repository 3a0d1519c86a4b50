package redisstore

// Benchmarks of the 304 path through Redis next to MemoryStore and the bbolt
// store, against the shared benchmark origin (internal/benchkit), and the
// bytes one warm 304 moves between the worker and Redis (Redis' own INFO
// counters). Each benchmark starts its own redis-server (and skips when
// there is none, outside CI).
//
//	go test -run '^$' -bench Revalidate304 ./redisstore                # one store at a time
//	go test -run '^$' -bench SideBySide304 -benchtime 9x ./redisstore   # interleaved, ratios
//
// BenchmarkSideBySide304 runs the three stores interleaved, b.N rounds of
// one batch each, and reports per store the median ns/request
// ("ns/req:STORE"), the medians of the per-round ratios redis/memory and
// redis/bbolt ("x-mem:redis", "x-bolt:redis"), and the bytes per warm 304
// between worker and Redis ("redis-B/304").

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/internal/benchkit"
)

const (
	benchMem   = "memory"
	benchBolt  = "bbolt"
	benchRedis = "redis"
)

var (
	benchStores = []string{benchMem, benchBolt, benchRedis}
	benchSizes  = []int{1 << 10, 64 << 10, 1 << 20}
)

// benchRig is the origin and Redis a benchmark runs against.
type benchRig struct {
	origin *benchkit.Origin
	client *redis.Client
	top    topology
}

func newBenchRig(b *testing.B) *benchRig {
	requireRedis(b)
	port, err := freePort()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := startRedis(b.TempDir(), port)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Kill)
	o := benchkit.NewOrigin()
	b.Cleanup(o.Close)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second,
		WriteTimeout: time.Second, MaxRetries: 1, ContextTimeoutEnabled: true})
	b.Cleanup(func() { c.Close() })
	return &benchRig{origin: o, client: c, top: topology{name: "single", each: eachSingle}}
}

// benchClient is one store behind a Transport, polling one resource in
// steady 304 state.
type benchClient struct {
	name string
	c    *http.Client
	url  string
	want *benchkit.Resource
	buf  []byte
}

func (r *benchRig) newClient(b *testing.B, name string, size int) *benchClient {
	var st etagcache.Store
	switch name {
	case benchMem:
		st = etagcache.NewMemoryStore(256 << 20)
	case benchBolt:
		bs, err := etagcache.OpenBoltStore(filepath.Join(b.TempDir(), "cache.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { bs.Close() })
		st = bs
	case benchRedis:
		st = New(r.client, WithPrefix(fmt.Sprintf("bench:%d:%d:", size, time.Now().UnixNano())))
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 16
	b.Cleanup(base.CloseIdleConnections)
	idx := slices.Index(benchStores, name)
	bc := &benchClient{
		name: name,
		c:    etagcache.NewTransport(st, etagcache.WithBase(base)).Client(),
		url:  r.origin.URL + benchkit.Path(idx, size, 0),
		want: r.origin.Resource(size, 0),
		buf:  make([]byte, size+1),
	}
	for range 2 { // the fetch that stores, then one revalidation
		if err := bc.get(); err != nil {
			b.Fatal(err)
		}
	}
	return bc
}

// get does one GET and checks status, length and every body byte.
func (bc *benchClient) get() error {
	resp, err := bc.c.Get(bc.url)
	if err != nil {
		return err
	}
	n, err := io.ReadFull(resp.Body, bc.buf)
	resp.Body.Close()
	switch {
	case err != io.ErrUnexpectedEOF && err != io.EOF && err != nil:
		return err
	case resp.StatusCode != http.StatusOK || n != len(bc.want.Body) || !bytes.Equal(bc.buf[:n], bc.want.Body):
		return fmt.Errorf("%s: status %d, %d bytes: not the origin's body", bc.name, resp.StatusCode, n)
	}
	return nil
}

func (bc *benchClient) batch(n int) (time.Duration, error) {
	start := time.Now()
	for range n {
		if err := bc.get(); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// bytesPer304 measures, with Redis' counters, the bytes n revalidations of
// bc move between it and Redis, per revalidation, less what reading the
// counters costs.
func (r *benchRig) bytesPer304(b *testing.B, bc *benchClient, n int) float64 {
	i0 := redisBytes(b, r.top, r.client)
	i1 := redisBytes(b, r.top, r.client)
	if _, err := bc.batch(n); err != nil {
		b.Fatal(err)
	}
	i2 := redisBytes(b, r.top, r.client)
	return float64((i2-i1)-(i1-i0)) / float64(n)
}

// BenchmarkRevalidate304: steady 304 state, one store at a time.
func BenchmarkRevalidate304(b *testing.B) {
	r := newBenchRig(b)
	for _, size := range benchSizes {
		b.Run(benchkit.SizeName(size), func(b *testing.B) {
			for _, name := range benchStores {
				b.Run(name, func(b *testing.B) {
					bc := r.newClient(b, name, size)
					b.ReportAllocs()
					b.SetBytes(int64(size))
					b.ResetTimer()
					if _, err := bc.batch(b.N); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if name == benchRedis {
						b.ReportMetric(r.bytesPer304(b, bc, 100), "redis-B/304")
					}
				})
			}
		})
	}
}

// BenchmarkSideBySide304 runs the stores interleaved, b.N rounds (use
// -benchtime Nx), in an order rotated each round, and reports medians of
// ns/request and of the per-round ratios of Redis to the others.
func BenchmarkSideBySide304(b *testing.B) {
	r := newBenchRig(b)
	for _, size := range benchSizes {
		b.Run(benchkit.SizeName(size), func(b *testing.B) {
			clients := make([]*benchClient, len(benchStores))
			for i, name := range benchStores {
				clients[i] = r.newClient(b, name, size)
			}
			batch := max(20, min(500, (64<<20)/(size*4)))
			ns := make([][]float64, len(clients))
			var xMem, xBolt []float64
			for round := range b.N {
				per := make([]float64, len(clients))
				for k := range clients {
					i := (round + k) % len(clients)
					d, err := clients[i].batch(batch)
					if err != nil {
						b.Fatal(err)
					}
					per[i] = float64(d.Nanoseconds()) / float64(batch)
					ns[i] = append(ns[i], per[i])
				}
				xMem = append(xMem, per[2]/per[0])
				xBolt = append(xBolt, per[2]/per[1])
			}
			b.ReportMetric(0, "ns/op") // a whole round's time means nothing
			for i, name := range benchStores {
				b.ReportMetric(median(ns[i]), "ns/req:"+name)
			}
			b.ReportMetric(median(xMem), "x-mem:redis")
			b.ReportMetric(median(xBolt), "x-bolt:redis")
			b.ReportMetric(r.bytesPer304(b, clients[2], 100), "redis-B/304")
		})
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
