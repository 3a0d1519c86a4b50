package benchkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/gregjones/httpcache"
	"github.com/gregjones/httpcache/diskcache"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/httpcachestore"
)

// The implementations compared, in table order.
const (
	Bare            = "bare-304"
	EtagcacheMem    = "etagcache-mem"
	EtagcacheBolt   = "etagcache-bbolt"
	EtagcacheAdapt  = "etagcache-httpcache-adapter"
	HTTPCacheMem    = "httpcache-mem"
	HTTPCacheDisk   = "httpcache-disk"
	idleConnsPerImp = 16
)

// Impls lists every implementation, in table order.
var Impls = []string{Bare, EtagcacheMem, EtagcacheBolt, EtagcacheAdapt, HTTPCacheMem, HTTPCacheDisk}

// memStoreBytes bounds the memory store: room for a 16 MiB entry (and, in
// a miss batch, a few of them) without evicting the steady-state entries.
const memStoreBytes = 256 << 20

// Impl is one implementation set up for a scenario: its own http.Transport
// (so that connection reuse is the same for every implementation), and
// the cache in front of it.
type Impl struct {
	Name  string
	Index int // origin's counter index, the position in Impls

	base   *http.Transport
	client *http.Client
	dir    string // temporary folder for file-backed caches
	gen    int    // number of caches made, for fresh file names
	closer func() error
}

// NewImpl sets up implementation name (one of Impls) with an empty cache,
// keeping files under a new folder in tmp.
func NewImpl(name, tmp string) (*Impl, error) {
	idx := -1
	for i, n := range Impls {
		if n == name {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("benchkit: unknown implementation %q", name)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConns = 4 * idleConnsPerImp
	base.MaxIdleConnsPerHost = idleConnsPerImp
	im := &Impl{Name: name, Index: idx, base: base, client: &http.Client{}}
	if name == EtagcacheBolt || name == HTTPCacheDisk {
		dir, err := os.MkdirTemp(tmp, "benchkit-"+name+"-")
		if err != nil {
			return nil, err
		}
		im.dir = dir
	}
	if err := im.Reset(); err != nil {
		im.Close()
		return nil, err
	}
	return im, nil
}

// Reset replaces the cache with a new, empty one (the base transport and
// its idle connections are kept).
func (im *Impl) Reset() error {
	if err := im.closeCache(); err != nil {
		return err
	}
	im.gen++
	var rt http.RoundTripper
	switch im.Name {
	case Bare:
		rt = im.base
	case EtagcacheMem:
		rt = etagcache.NewTransport(etagcache.NewMemoryStore(memStoreBytes), etagcache.WithBase(im.base))
	case EtagcacheBolt:
		path := filepath.Join(im.dir, fmt.Sprintf("cache-%d.db", im.gen))
		s, err := etagcache.OpenBoltStore(path)
		if err != nil {
			return err
		}
		im.closer = func() error {
			err := s.Close()
			if rerr := os.Remove(path); err == nil {
				err = rerr
			}
			return err
		}
		rt = etagcache.NewTransport(s, etagcache.WithBase(im.base))
	case EtagcacheAdapt:
		rt = etagcache.NewTransport(httpcachestore.New(httpcache.NewMemoryCache()), etagcache.WithBase(im.base))
	case HTTPCacheMem:
		t := httpcache.NewTransport(httpcache.NewMemoryCache())
		t.Transport = im.base
		rt = t
	case HTTPCacheDisk:
		dir := filepath.Join(im.dir, fmt.Sprintf("cache-%d", im.gen))
		t := httpcache.NewTransport(diskcache.New(dir))
		t.Transport = im.base
		rt = t
		im.closer = func() error { return os.RemoveAll(dir) }
	}
	im.client.Transport = rt
	return nil
}

func (im *Impl) closeCache() error {
	if im.closer == nil {
		return nil
	}
	err := im.closer()
	im.closer = nil
	return err
}

// Close drops the cache and its files and the idle connections.
func (im *Impl) Close() error {
	err := im.closeCache()
	im.base.CloseIdleConnections()
	if im.dir != "" {
		if rerr := os.RemoveAll(im.dir); err == nil {
			err = rerr
		}
	}
	return err
}

// Get does what a caller of the implementation does: one GET of url, and
// reads the whole body into buf (which must hold len(want.Body)+1 bytes, so
// a long body is caught). It then checks that status, ETag and body are
// those of want: the length, and bytes.Equal on every byte.
//
// held is the body as the caller already holds it (its own copy, from an
// earlier fetch), for a steady-state request. Only bare-304 makes use of
// it: it sends If-None-Match itself, expects a 304, and then "serves" the
// body it holds by reading it out of a bytes.Reader into buf, the same work
// a caller of a cache does reading the 200's body out of the cache. With
// held nil, bare-304 sends a plain GET.
func (im *Impl) Get(ctx context.Context, url string, want *Resource, held, buf []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	bare := im.Name == Bare && held != nil
	if bare {
		req.Header["If-None-Match"] = []string{want.ETag}
	}
	resp, err := im.client.Do(req)
	if err != nil {
		return err
	}
	body := io.Reader(resp.Body)
	wantStatus := http.StatusOK
	if bare {
		wantStatus = http.StatusNotModified
		// The 304 has no body: drain and close it, then serve the body
		// the caller holds.
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		body = bytes.NewReader(held)
	}
	n, rerr := readAll(body, buf)
	if !bare {
		if cerr := resp.Body.Close(); rerr == nil {
			rerr = cerr
		}
	}
	switch {
	case resp.StatusCode != wantStatus:
		return fmt.Errorf("%s: GET %s: status %d, want %d", im.Name, url, resp.StatusCode, wantStatus)
	case rerr != nil:
		return fmt.Errorf("%s: GET %s: reading body: %w", im.Name, url, rerr)
	case resp.Header.Get("Etag") != want.ETag:
		return fmt.Errorf("%s: GET %s: ETag %s, want %s", im.Name, url, resp.Header.Get("Etag"), want.ETag)
	case n != len(want.Body):
		return fmt.Errorf("%s: GET %s: %d body bytes, want %d", im.Name, url, n, len(want.Body))
	case !bytes.Equal(buf[:n], want.Body):
		return fmt.Errorf("%s: GET %s: body differs from the origin's", im.Name, url)
	}
	return nil
}

var errTooLong = errors.New("body longer than expected")

// readAll reads r to EOF into buf without allocating.
func readAll(r io.Reader, buf []byte) (int, error) {
	n := 0
	for {
		if n == len(buf) {
			return n, errTooLong
		}
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
