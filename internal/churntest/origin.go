package churntest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// coding is how a resource answers Accept-Encoding.
type coding int

const (
	identityOnly coding = iota // identity whatever the request accepts
	varyAlways                 // gzip when asked, Vary: Accept-Encoding on both (Apache, DeflateAlterETag NoChange)
	noVary                     // gzip when asked, no Vary at all (nginx, gzip_vary off); gzip's ETag weakened as nginx does
	varyOnGzip                 // gzip when asked, Vary only on the gzip answer (lighttpd, Caddy)
)

// resource is one document of the origin. Its ETag is its version only,
// shared by every tenant and both codings, so that a cache that mixes
// variants up serves a wrong body instead of missing.
type resource struct {
	path         string
	tenantVary   bool // Vary: X-Tenant, a body per tenant
	coding       coding
	weak         bool // W/"vN" rather than "vN"
	lastModified bool // a Last-Modified that moves with every version
	cacheControl string
	// lifetime is max-age plus stale-while-revalidate: in freshness mode a
	// version may still be served until this long after it was superseded.
	lifetime time.Duration
	cookie   bool // Set-Cookie: session=<the request's id> on every answer
}

// resources are served alike in both modes: in the default mode the
// transports revalidate every GET whatever Cache-Control says; in freshness
// mode the lifetimes matter. No resource has Last-Modified without an
// explicit lifetime, so that none is heuristically fresh.
var resources = []resource{
	{path: "/tenant", tenantVary: true, lastModified: true, cookie: true,
		cacheControl: "max-age=1, stale-while-revalidate=1", lifetime: 2 * time.Second},
	{path: "/apache", coding: varyAlways},
	{path: "/nginx", coding: noVary, lastModified: true, cacheControl: "max-age=2", lifetime: 2 * time.Second},
	{path: "/lighttpd", coding: varyOnGzip, cacheControl: "max-age=0, must-revalidate", cookie: true},
	{path: "/tenant-gz", tenantVary: true, coding: varyAlways, weak: true, cookie: true},
}

// changeEvery makes every n-th GET of a resource change it first: a change
// the transports hear of only from the origin (another writer), beside the
// POSTs that go through them.
const changeEvery = 40

const (
	// HeaderReqID carries the request's id to the origin, which echoes it
	// in Set-Cookie. It is added below the cache (see idBase), so that the
	// cache's coalescing keys do not see a field unique to each request.
	HeaderReqID = "X-Req-Id"
	// headerTick is the origin's tick when it answered (see Origin.tick).
	headerTick = "X-Origin-Tick"
	// headerVersion is the version a POST made.
	headerVersion = "X-Version"
)

// variant names one representation the origin serves.
type variant struct {
	res     int
	version int
	tenant  string // "-" where the resource does not vary by tenant
	coding  string // "gzip" or "identity"
}

// Origin serves resources whose versions change on POST and every
// changeEvery GETs, and remembers every version it served, per variant,
// and when each version was superseded.
type Origin struct {
	srv *httptest.Server
	URL string

	epoch time.Time // Last-Modified of version 0, a day ago

	mu sync.Mutex
	// tick counts the origin's events (answers and changes), so that a
	// response can be placed before or after the moment a request began.
	tick   uint64
	res    []resState
	served map[variant]bool
	gz     map[variant][]byte

	gets200, gets304, posts int
}

type resState struct {
	version int
	hits    int
	// history[v-1] is when version v became current.
	history []change
	// postFloor is the version the latest POST made, once the POST had
	// returned through a transport (so the transport had invalidated).
	postFloor int
}

type change struct {
	tick uint64
	at   time.Time
}

// NewOrigin starts the origin; close it with Close.
func NewOrigin() *Origin {
	o := &Origin{
		epoch:  time.Now().Add(-24 * time.Hour).Truncate(time.Second),
		served: map[variant]bool{},
		gz:     map[variant][]byte{},
		res:    make([]resState, len(resources)),
	}
	now := time.Now()
	for i := range o.res {
		o.res[i] = resState{version: 1, history: []change{{0, now}}}
	}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	o.URL = o.srv.URL
	return o
}

// Close stops the origin.
func (o *Origin) Close() { o.srv.Close() }

func resourceIndex(path string) int {
	for i, r := range resources {
		if r.path == path {
			return i
		}
	}
	return -1
}

// bodyText is the identity body of a variant: a first line that says what
// it is, then lines of a length that depends on it, so that a body cut or
// spliced from two variants does not equal any variant's.
func bodyText(path string, version int, tenant, coding string) []byte {
	k := textKey{path, version, tenant, coding}
	if b, ok := texts.Load(k); ok {
		return b.([]byte)
	}
	b := makeBodyText(path, version, tenant, coding)
	texts.Store(k, b)
	return b
}

// texts holds the bodies made so far: the check needs each many times.
var texts sync.Map // textKey → []byte

type textKey struct {
	path    string
	version int
	tenant  string
	coding  string
}

func makeBodyText(path string, version int, tenant, coding string) []byte {
	head := fmt.Sprintf("path=%s v=%d tenant=%s coding=%s", path, version, tenant, coding)
	var b bytes.Buffer
	b.WriteString(head)
	b.WriteByte('\n')
	lines := 8 + (version*7+len(tenant)+len(path))%52 // 0.4 to 3 KiB: small and large records
	for i := range lines {
		fmt.Fprintf(&b, "%s line %d\n", head, i)
	}
	return b.Bytes()
}

func (o *Origin) lastModified(version int) string {
	return o.epoch.Add(time.Duration(version) * time.Second).UTC().Format(http.TimeFormat)
}

func (o *Origin) serve(w http.ResponseWriter, r *http.Request) {
	ri := resourceIndex(r.URL.Path)
	if ri < 0 {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		o.serveGet(w, r, ri)
	case http.MethodPost:
		o.servePost(w, ri)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// bumpLocked makes a new version of resource ri current; o.mu is held.
func (o *Origin) bumpLocked(ri int) int {
	st := &o.res[ri]
	o.tick++
	st.version++
	st.history = append(st.history, change{o.tick, time.Now()})
	return st.version
}

func (o *Origin) servePost(w http.ResponseWriter, ri int) {
	o.mu.Lock()
	v := o.bumpLocked(ri)
	o.posts++
	o.mu.Unlock()
	w.Header().Set(headerVersion, strconv.Itoa(v))
	if v%2 == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body := fmt.Sprintf("posted %s: now v=%d\n", resources[ri].path, v)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write([]byte(body))
}

// acceptsGzip is what the origin reads of Accept-Encoding: the tests send
// only "gzip", "identity" or nothing (net/http then sends "gzip").
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if name, _, _ := strings.Cut(strings.TrimSpace(c), ";"); strings.EqualFold(name, "gzip") {
				return true
			}
		}
	}
	return false
}

// inmMatches is the weak comparison of If-None-Match (RFC 9110 §13.1.2).
func inmMatches(inm, opaque string) bool {
	for _, t := range strings.Split(inm, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == opaque {
			return true
		}
	}
	return false
}

func (o *Origin) serveGet(w http.ResponseWriter, r *http.Request, ri int) {
	res := &resources[ri]
	tenant := "-"
	if res.tenantVary {
		tenant = r.Header.Get("X-Tenant")
		if tenant == "" {
			tenant = "none"
		}
	}
	gz := res.coding != identityOnly && acceptsGzip(r.Header)
	cod := "identity"
	if gz {
		cod = "gzip"
	}

	o.mu.Lock()
	st := &o.res[ri]
	st.hits++
	if st.hits%changeEvery == 0 {
		o.bumpLocked(ri)
	}
	o.tick++
	tick, v := o.tick, st.version
	opaque := `"v` + strconv.Itoa(v) + `"`
	notModified := false
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		notModified = inmMatches(inm, opaque)
	} else if ims := r.Header.Get("If-Modified-Since"); ims != "" && res.lastModified {
		t, err := http.ParseTime(ims)
		notModified = err == nil && !o.epoch.Add(time.Duration(v)*time.Second).After(t)
	}
	key := variant{ri, v, tenant, cod}
	if notModified {
		o.gets304++
	} else {
		o.gets200++
		o.served[key] = true
	}
	o.mu.Unlock()

	h := w.Header()
	etag := opaque
	if res.weak || (gz && res.coding == noVary) {
		etag = "W/" + opaque
	}
	h.Set("Etag", etag)
	if res.lastModified {
		h.Set("Last-Modified", o.lastModified(v))
	}
	if res.cacheControl != "" {
		h.Set("Cache-Control", res.cacheControl)
	}
	var vary []string
	if res.tenantVary {
		vary = append(vary, "X-Tenant")
	}
	if res.coding == varyAlways || (res.coding == varyOnGzip && gz) {
		vary = append(vary, "Accept-Encoding")
	}
	if len(vary) > 0 {
		h.Set("Vary", strings.Join(vary, ", "))
	}
	if id := r.Header.Get(HeaderReqID); id != "" && res.cookie {
		h.Set("Set-Cookie", "session="+id+"; Path=/; HttpOnly")
	}
	h.Set(headerTick, strconv.FormatUint(tick, 10))
	if notModified {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := bodyText(res.path, v, tenant, cod)
	if gz {
		body = o.gzipped(key, body)
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// gzipped compresses a variant's body once.
func (o *Origin) gzipped(key variant, text []byte) []byte {
	o.mu.Lock()
	b, ok := o.gz[key]
	o.mu.Unlock()
	if ok {
		return b
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(text)
	_ = zw.Close()
	o.mu.Lock()
	o.gz[key] = buf.Bytes()
	o.mu.Unlock()
	return buf.Bytes()
}

// snapshot is what the origin was when a request began.
type snapshot struct {
	tick      uint64
	version   int
	postFloor int
	at        time.Time
}

func (o *Origin) begin(ri int) snapshot {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := &o.res[ri]
	return snapshot{tick: o.tick, version: st.version, postFloor: st.postFloor, at: time.Now()}
}

// posted records that a POST which made version v of ri has returned
// through a transport.
func (o *Origin) posted(ri, v int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := &o.res[ri]
	st.postFloor = max(st.postFloor, v)
}

// versionAt is the version of ri that was current at tick.
func (o *Origin) versionAt(ri int, tick uint64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.res[ri].history
	// The first version whose change came after tick, less one.
	return sort.Search(len(h), func(i int) bool { return h[i].tick > tick })
}

// supersededAt is when version v of ri stopped being current, and false
// if it still is.
func (o *Origin) supersededAt(ri, v int) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.res[ri].history
	if v < 1 || v >= len(h) {
		return time.Time{}, false
	}
	return h[v].at, true
}

func (o *Origin) wasServed(key variant) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.served[key]
}

func (o *Origin) counts() (gets200, gets304, posts int, versions []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, st := range o.res {
		versions = append(versions, st.version)
	}
	return o.gets200, o.gets304, o.posts, versions
}
