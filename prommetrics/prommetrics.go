// Package prommetrics exports the counters of etagcache Transports and the
// sizes of their stores as Prometheus metrics.
//
// It is a module of its own (github.com/etagcache/etagcache/prommetrics),
// so that programs which do not use Prometheus never link
// github.com/prometheus/client_golang.
//
//	c := prommetrics.New()
//	c.AddTransport("github", tr)  // tr is an *etagcache.Transport
//	c.AddStore("github", store)   // any store with Len() int and/or Size() int64
//	prometheus.MustRegister(c)
//	http.Handle("/metrics", promhttp.Handler())
//
// # Metrics
//
// Counters, labelled transport="<name>", one per field of etagcache.Stats:
//
//	etagcache_requests_total              requests passed to RoundTrip
//	etagcache_stored_total                responses written to the store
//	etagcache_revalidated_total           304s turned into a 200 from the store
//	etagcache_changed_total               200s to a conditional request (the resource changed)
//	etagcache_bypassed_total              requests sent on without consulting the store
//	etagcache_store_errors_total          store calls that failed (the requests went on)
//	etagcache_store_served_bytes_total    body bytes served from the store instead of the network
//
// Gauges, labelled store="<name>", for stores that report them:
//
//	etagcache_store_entries   entries held (a store with Len() int)
//	etagcache_store_bytes     bytes accounted to the entries held (a store with Size() int64)
//
// # Hit ratio
//
// The share of requests whose body did not cross the network, over five
// minutes, per transport:
//
//	rate(etagcache_revalidated_total[5m]) / rate(etagcache_requests_total[5m])
//
// and the bytes the cache saved per second:
//
//	rate(etagcache_store_served_bytes_total[5m])
package prommetrics

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/etagcache/etagcache"
	"github.com/prometheus/client_golang/prometheus"
)

// StatsSource is what AddTransport reads: *etagcache.Transport, or anything
// that reports the same counters.
type StatsSource interface {
	Stats() etagcache.Stats
}

// EntryCounter is implemented by stores that can count their entries
// (etagcache.MemoryStore and etagcache.BoltStore do). A new store opts in
// to the etagcache_store_entries gauge by having this method.
type EntryCounter interface {
	Len() int
}

// ByteSizer is implemented by stores that know how many bytes their entries
// take (etagcache.MemoryStore and etagcache.BoltStore do). A new store opts
// in to the etagcache_store_bytes gauge by having this method.
type ByteSizer interface {
	Size() int64
}

// ErrNoSize is wrapped by the error of AddStore for a store that implements
// neither EntryCounter nor ByteSizer, so has nothing to report.
var ErrNoSize = errors.New("prommetrics: store reports no size (neither Len() int nor Size() int64)")

// Collector is a prometheus.Collector for any number of Transports and
// stores, each named by a label value. Its metrics are read when Prometheus
// scrapes: counters from Stats, gauges from Len and Size. It is safe for
// concurrent use, and transports and stores may be added after it has been
// registered.
type Collector struct {
	mu         sync.Mutex
	transports map[string]StatsSource
	stores     map[string]etagcache.Store
}

type counter struct {
	desc *prometheus.Desc
	get  func(etagcache.Stats) int64
}

var (
	counters = []counter{
		{newCounterDesc("etagcache_requests_total", "Requests passed to the transport's RoundTrip."),
			func(s etagcache.Stats) int64 { return s.Requests }},
		{newCounterDesc("etagcache_stored_total", "Responses written to the store."),
			func(s etagcache.Stats) int64 { return s.Stored }},
		{newCounterDesc("etagcache_revalidated_total", "304 Not Modified answers turned into a 200 with the stored body."),
			func(s etagcache.Stats) int64 { return s.Revalidated }},
		{newCounterDesc("etagcache_changed_total", "200 answers to a conditional request the transport made (the resource had changed)."),
			func(s etagcache.Stats) int64 { return s.Changed }},
		{newCounterDesc("etagcache_bypassed_total", "Requests sent on without consulting the store."),
			func(s etagcache.Stats) int64 { return s.Bypassed }},
		{newCounterDesc("etagcache_store_errors_total", "Store calls that failed; the requests went on to the origin."),
			func(s etagcache.Stats) int64 { return s.StoreErrors }},
		{newCounterDesc("etagcache_store_served_bytes_total", "Body bytes served from the store instead of the network."),
			func(s etagcache.Stats) int64 { return s.BytesServed }},
	}
	entriesDesc = prometheus.NewDesc("etagcache_store_entries", "Entries held by the store.", []string{"store"}, nil)
	bytesDesc   = prometheus.NewDesc("etagcache_store_bytes", "Bytes accounted to the entries held by the store.", []string{"store"}, nil)
)

func newCounterDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, []string{"transport"}, nil)
}

// New returns a Collector with nothing to report yet.
func New() *Collector {
	return &Collector{transports: make(map[string]StatsSource), stores: make(map[string]etagcache.Store)}
}

// AddTransport reports the counters of t under the label transport=name.
// It fails if name is already taken or t is nil.
func (c *Collector) AddTransport(name string, t StatsSource) error {
	if t == nil {
		return fmt.Errorf("prommetrics: transport %q is nil", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.transports[name]; dup {
		return fmt.Errorf("prommetrics: a transport named %q is already added", name)
	}
	c.transports[name] = t
	return nil
}

// AddStore reports the size of s under the label store=name: its entry
// count if it implements EntryCounter, its bytes if it implements
// ByteSizer. It fails, wrapping ErrNoSize, for a store that implements
// neither, and if name is already taken.
func (c *Collector) AddStore(name string, s etagcache.Store) error {
	_, counts := s.(EntryCounter)
	_, sizes := s.(ByteSizer)
	if !counts && !sizes {
		return fmt.Errorf("%w: store %q (%T)", ErrNoSize, name, s)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.stores[name]; dup {
		return fmt.Errorf("prommetrics: a store named %q is already added", name)
	}
	c.stores[name] = s
	return nil
}

// Remove stops reporting the transport and the store named name, if any
// (for a transport or a store that is closed).
func (c *Collector) Remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.transports, name)
	delete(c.stores, name)
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, k := range counters {
		ch <- k.desc
	}
	ch <- entriesDesc
	ch <- bytesDesc
}

// Collect implements prometheus.Collector: it reads every transport's Stats
// and every store's size at the time of the scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	transports := make(map[string]StatsSource, len(c.transports))
	for k, v := range c.transports {
		transports[k] = v
	}
	stores := make(map[string]etagcache.Store, len(c.stores))
	for k, v := range c.stores {
		stores[k] = v
	}
	c.mu.Unlock()
	// Stores are read outside the lock: Len and Size take the stores' own.

	for _, name := range sortedKeys(transports) {
		st := transports[name].Stats()
		for _, k := range counters {
			ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(k.get(st)), name)
		}
	}
	for _, name := range sortedKeys(stores) {
		s := stores[name]
		if n, ok := s.(EntryCounter); ok {
			ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(n.Len()), name)
		}
		if b, ok := s.(ByteSizer); ok {
			ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(b.Size()), name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
