package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"sync"
)

// Kind is what a scenario measures.
type Kind int

const (
	// Steady: the entry is stored first; every measured request is a
	// revalidation answered 304 (for bare-304: the caller's own
	// conditional GET, answered 304).
	Steady Kind = iota
	// Miss: every measured request is the first fetch of a fresh URL into
	// a cache that was emptied before the batch (for bare-304: a plain GET).
	Miss
)

// Scenario is one row group of the table.
type Scenario struct {
	Name    string // in the table
	Slug    string // in benchmark names
	Kind    Kind
	Size    int // body bytes
	URLs    int // distinct URLs polled (Steady); 1 means one URL
	Workers int // goroutines sharing the batch; 1 means sequential
}

// Sizes are the body sizes measured.
var Sizes = []int{1 << 10, 64 << 10, 1 << 20, 16 << 20}

// SizeName writes a size as 1KiB, 64KiB, 1MiB, 16MiB.
func SizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// Concurrency of the concurrent scenario.
const (
	ConcurrentWorkers = 8
	ConcurrentURLs    = 64
	ConcurrentSize    = 64 << 10
)

// Scenarios returns every scenario, in table order: steady 304 state at
// each size, the miss at each size, and 8 goroutines polling 64 URLs of
// 64 KiB in steady 304 state.
func Scenarios() []Scenario {
	var s []Scenario
	for _, n := range Sizes {
		s = append(s, Scenario{Name: "304 " + SizeName(n), Slug: "304-" + SizeName(n), Kind: Steady, Size: n, URLs: 1, Workers: 1})
	}
	for _, n := range Sizes {
		s = append(s, Scenario{Name: "miss " + SizeName(n), Slug: "miss-" + SizeName(n), Kind: Miss, Size: n, URLs: 1, Workers: 1})
	}
	s = append(s, Scenario{
		Name: fmt.Sprintf("304 %dg×%d URLs %s", ConcurrentWorkers, ConcurrentURLs, SizeName(ConcurrentSize)),
		Slug: fmt.Sprintf("304-%dgx%d-%s", ConcurrentWorkers, ConcurrentURLs, SizeName(ConcurrentSize)),
		Kind: Steady, Size: ConcurrentSize, URLs: ConcurrentURLs, Workers: ConcurrentWorkers,
	})
	return s
}

// maxMissBytes bounds the bodies one miss batch puts in a cache.
const maxMissBytes = 256 << 20

// Fixture is one implementation set up for one scenario: for Steady, with
// its entries stored and revalidated once.
type Fixture struct {
	Scenario Scenario
	Impl     *Impl

	origin *Origin
	urls   []string
	res    []*Resource
	held   [][]byte // bare-304's own copies of the bodies (Steady)
	bufs   [][]byte
	miss   int // fresh URLs used so far
}

// NewFixture sets up implementation impl for sc against o, keeping files
// under tmp.
func NewFixture(ctx context.Context, o *Origin, sc Scenario, impl, tmp string) (*Fixture, error) {
	if sc.URLs < 1 {
		sc.URLs = 1
	}
	if sc.Workers < 1 {
		sc.Workers = 1
	}
	im, err := NewImpl(impl, tmp)
	if err != nil {
		return nil, err
	}
	f := &Fixture{Scenario: sc, Impl: im, origin: o}
	for i := range sc.URLs {
		f.res = append(f.res, o.Resource(sc.Size, i))
		f.urls = append(f.urls, o.URL+Path(im.Index, sc.Size, i))
		// Steady state: the bare caller holds the body from an earlier
		// fetch, in its own memory (not the origin's slice, which the
		// check compares against), as a cache holds its own copy.
		// Caches get an empty slice, which they ignore.
		held := []byte{}
		if sc.Kind == Steady && im.Name == Bare {
			held = bytes.Clone(f.res[i].Body)
		}
		f.held = append(f.held, held)
	}
	for range sc.Workers {
		f.bufs = append(f.bufs, make([]byte, sc.Size+1))
	}
	if sc.Kind == Steady {
		if err := f.prime(ctx); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// prime stores every URL's entry, revalidates it once, and checks with the
// origin that this is what happened.
func (f *Fixture) prime(ctx context.Context) error {
	im := f.Impl
	full0, nm0 := f.origin.Counts(im.Index)
	if im.Name != Bare {
		for i, u := range f.urls {
			if err := im.Get(ctx, u, f.res[i], nil, f.bufs[0]); err != nil {
				return err
			}
		}
	}
	for i, u := range f.urls {
		if err := im.Get(ctx, u, f.res[i], f.held[i], f.bufs[0]); err != nil {
			return err
		}
	}
	full, nm := f.origin.Counts(im.Index)
	wantFull := int64(len(f.urls))
	if im.Name == Bare {
		wantFull = 0
	}
	if full-full0 != wantFull || nm-nm0 != int64(len(f.urls)) {
		return fmt.Errorf("%s: priming %d URLs: origin answered %d×200 and %d×304, want %d and %d (entry not stored?)",
			im.Name, len(f.urls), full-full0, nm-nm0, wantFull, len(f.urls))
	}
	return nil
}

// Close drops the implementation and its files.
func (f *Fixture) Close() error { return f.Impl.Close() }

// Batch is n requests ready to run.
type Batch struct {
	N      int          // requests in the batch
	Run    func() error // the measured part
	Verify func() error // afterwards: did the origin see what it should?
}

// Prepare readies a batch of n requests (fewer for a miss batch, which holds
// at most 256 MiB of bodies; see Batch.N), shared out among the workers. Everything that is not
// the requests themselves is done here, unmeasured: for a miss batch,
// emptying the cache and making the fresh URLs.
func (f *Fixture) Prepare(ctx context.Context, n int) (*Batch, error) {
	sc, im := f.Scenario, f.Impl
	n = max(n, 1)
	b := &Batch{N: n}
	full0, nm0 := f.origin.Counts(im.Index)
	wantFull, wantNM := int64(0), int64(n)
	switch {
	case sc.Kind == Miss:
		n = min(n, max(1, maxMissBytes/max(sc.Size, 1)))
		b.N = n
		wantFull, wantNM = int64(n), 0
		if err := im.Reset(); err != nil {
			return nil, err
		}
		urls := make([]string, n)
		for i := range urls {
			urls[i] = f.origin.URL + MissPath(im.Index, sc.Size, f.miss)
			f.miss++
		}
		res, buf := f.res[0], f.bufs[0]
		b.Run = func() error {
			for _, u := range urls {
				if err := im.Get(ctx, u, res, nil, buf); err != nil {
					return err
				}
			}
			return nil
		}
	case sc.Workers == 1:
		u, res, held, buf := f.urls[0], f.res[0], f.held[0], f.bufs[0]
		b.Run = func() error {
			for range n {
				if err := im.Get(ctx, u, res, held, buf); err != nil {
					return err
				}
			}
			return nil
		}
	default:
		b.Run = func() error {
			var wg sync.WaitGroup
			errs := make([]error, sc.Workers)
			for w := range sc.Workers {
				wg.Go(func() {
					// Each worker starts at its own share of the URLs and
					// walks on through all of them.
					start := w * len(f.urls) / sc.Workers
					per := n / sc.Workers
					if w < n%sc.Workers {
						per++
					}
					for j := range per {
						k := (start + j) % len(f.urls)
						if err := im.Get(ctx, f.urls[k], f.res[k], f.held[k], f.bufs[w]); err != nil {
							errs[w] = err
							return
						}
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return err
				}
			}
			return nil
		}
	}
	b.Verify = func() error {
		full, nm := f.origin.Counts(im.Index)
		if full-full0 != wantFull || nm-nm0 != wantNM {
			return fmt.Errorf("%s, %s: batch of %d: origin answered %d×200 and %d×304, want %d and %d",
				sc.Name, im.Name, n, full-full0, nm-nm0, wantFull, wantNM)
		}
		return nil
	}
	return b, nil
}
