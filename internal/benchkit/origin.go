package benchkit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
)

// maxImpls bounds the implementation indexes the origin counts requests for.
const maxImpls = 16

// Resource is one document the origin serves: its body and strong ETag.
type Resource struct {
	Body []byte
	ETag string

	etagField, lenField []string // preallocated header values
}

// Origin is the one local HTTP server every implementation talks to. It
// serves GET /{impl}/{kind}/{size}/{n}: kind "r" is resource n of that size
// (a document that never changes), kind "m" is a fresh URL for a miss (the
// body of resource 0, whatever n). Every answer carries a strong ETag and
// Cache-Control: no-cache (so that httpcache revalidates every time), and a
// matching If-None-Match gets 304 Not Modified with no body.
//
// The origin counts full (200) and 304 answers per implementation index, so
// the harness can check that a steady-state batch made no full fetch and a
// miss batch no revalidation.
type Origin struct {
	srv *httptest.Server
	// URL is the origin's base URL, http://127.0.0.1:port.
	URL string

	mu        sync.RWMutex
	resources map[[2]int]*Resource

	full, notMod [maxImpls]atomic.Int64
}

var (
	noCacheField = []string{"no-cache"}
	typeField    = []string{"application/octet-stream"}
)

// NewOrigin starts an origin on the loopback interface.
func NewOrigin() *Origin {
	o := &Origin{resources: make(map[[2]int]*Resource)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{impl}/{kind}/{size}/{n}", o.serve)
	o.srv = httptest.NewServer(mux)
	o.URL = o.srv.URL
	return o
}

// Close stops the origin.
func (o *Origin) Close() { o.srv.Close() }

// Resource returns resource n of the given size, making it on first use.
// Bodies are pseudo-random bytes (the same on every run) that differ from
// one n to the next in their first bytes, so that a cache serving the body
// of another URL is caught.
func (o *Origin) Resource(size, n int) *Resource {
	k := [2]int{size, n}
	o.mu.RLock()
	r := o.resources[k]
	o.mu.RUnlock()
	if r != nil {
		return r
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if r = o.resources[k]; r != nil {
		return r
	}
	body := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16), byte(size >> 24)})
	_, _ = rng.Read(body)
	var tag [8]byte
	binary.BigEndian.PutUint64(tag[:], uint64(n))
	copy(body, tag[:])
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	r = &Resource{Body: body, ETag: etag, etagField: []string{etag}, lenField: []string{strconv.Itoa(size)}}
	o.resources[k] = r
	return r
}

// Counts returns the 200 and 304 answers given so far to implementation i.
func (o *Origin) Counts(i int) (full, notModified int64) {
	return o.full[i].Load(), o.notMod[i].Load()
}

// Path returns the path of resource n of size for implementation i.
func Path(i int, size, n int) string { return fmt.Sprintf("/%d/r/%d/%d", i, size, n) }

// MissPath returns the n-th fresh URL path of size for implementation i.
func MissPath(i int, size, n int) string { return fmt.Sprintf("/%d/m/%d/%d", i, size, n) }

func (o *Origin) serve(w http.ResponseWriter, r *http.Request) {
	impl, err1 := strconv.Atoi(r.PathValue("impl"))
	size, err2 := strconv.Atoi(r.PathValue("size"))
	n, err3 := strconv.Atoi(r.PathValue("n"))
	kind := r.PathValue("kind")
	if err1 != nil || err2 != nil || err3 != nil || impl < 0 || impl >= maxImpls || size < 0 || size > 64<<20 || (kind != "r" && kind != "m") {
		http.NotFound(w, r)
		return
	}
	if kind == "m" {
		n = 0
	}
	res := o.Resource(size, n)
	h := w.Header()
	h["Etag"] = res.etagField
	h["Cache-Control"] = noCacheField
	if r.Header.Get("If-None-Match") == res.ETag {
		o.notMod[impl].Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	o.full[impl].Add(1)
	h["Content-Type"] = typeField
	h["Content-Length"] = res.lenField
	_, _ = w.Write(res.Body)
}
