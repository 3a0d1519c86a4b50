package benchkit

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"time"
)

// Config says how much to measure.
type Config struct {
	// Rounds of interleaving: in each round every implementation runs one
	// batch, in an order rotated from round to round. Default 25.
	Rounds int
	// BatchTime is the target duration of one batch; batch sizes are
	// calibrated per implementation to reach it. Default 30ms.
	BatchTime time.Duration
	// MaxBatch caps the requests in one batch. Default 20000.
	MaxBatch int
	// Fixed, if positive, is the number of requests in every batch (per
	// worker in the concurrent scenario): no calibration (for smoke tests).
	Fixed int
	// Scenarios to run; default Scenarios().
	Scenarios []Scenario
	// Impls to run, in table order; default Impls. Ratios need bare-304
	// and httpcache-mem among them.
	Impls []string
	// TempDir holds the file-backed caches; default os.TempDir().
	TempDir string
	// Log, if not nil, receives a line per scenario and implementation.
	Log io.Writer
}

// QuickConfig is a tiny run, for a smoke test: one round of one request
// per batch (one per worker in the concurrent scenario), no calibration.
func QuickConfig() Config { return Config{Rounds: 1, Fixed: 1} }

func (c *Config) defaults() {
	if c.Rounds <= 0 {
		c.Rounds = 25
	}
	if c.BatchTime <= 0 {
		c.BatchTime = 30 * time.Millisecond
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 20000
	}
	if c.Scenarios == nil {
		c.Scenarios = Scenarios()
	}
	if c.Impls == nil {
		c.Impls = Impls
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
}

// Round is one batch of one implementation.
type Round struct {
	N        int
	Duration time.Duration
	Mallocs  uint64 // heap objects allocated during the batch (whole process)
	Bytes    uint64 // heap bytes allocated during the batch (whole process)
}

// NsPerOp is the batch's time per request.
func (r Round) NsPerOp() float64 { return float64(r.Duration.Nanoseconds()) / float64(r.N) }

// Result is one row of the table.
type Result struct {
	Scenario Scenario
	Impl     string
	Rounds   []Round // in round order

	NsPerOp       float64 // median over rounds of the batch's ns/request
	MinNs, MaxNs  float64 // fastest and slowest round
	AllocsPerOp   float64 // over all rounds
	BytesPerOp    float64 // over all rounds
	XBare         float64 // median over rounds of ns/request ÷ bare-304's in the same round; NaN if not measured
	XHTTPCacheMem float64 // likewise against httpcache-mem
}

// Report is the outcome of Run.
type Report struct {
	Config     Config
	Start      time.Time
	Duration   time.Duration
	GoVersion  string
	GOOS       string
	GOARCH     string
	GOMAXPROCS int
	NumCPU     int
	Results    []Result
}

// Run measures every scenario of cfg against o.
func Run(ctx context.Context, o *Origin, cfg Config) (*Report, error) {
	cfg.defaults()
	rep := &Report{
		Config: cfg, Start: time.Now(), GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
	}
	for _, sc := range cfg.Scenarios {
		res, err := RunScenario(ctx, o, sc, cfg)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, res...)
	}
	rep.Duration = time.Since(rep.Start)
	return rep, nil
}

// RunScenario measures one scenario: every implementation gets a fixture
// and a calibrated batch size, then the rounds interleave their batches.
// Results are in the order of cfg.Impls.
func RunScenario(ctx context.Context, o *Origin, sc Scenario, cfg Config) (_ []Result, err error) {
	cfg.defaults()
	fx := make([]*Fixture, 0, len(cfg.Impls))
	defer func() {
		for _, f := range fx {
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("%s, %s: closing: %w", sc.Name, f.Impl.Name, cerr)
			}
		}
	}()
	for _, name := range cfg.Impls {
		f, err := NewFixture(ctx, o, sc, name, cfg.TempDir)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", sc.Name, name, err)
		}
		fx = append(fx, f)
	}

	sizes := make([]int, len(fx))
	for i, f := range fx {
		if cfg.Fixed > 0 {
			sizes[i] = cfg.Fixed * max(sc.Workers, 1)
			continue
		}
		if sizes[i], err = calibrate(ctx, f, cfg); err != nil {
			return nil, fmt.Errorf("%s, %s: calibrating: %w", sc.Name, f.Impl.Name, err)
		}
	}

	rounds := make([][]Round, len(fx))
	for r := range cfg.Rounds {
		for k := range fx {
			i := (r + k) % len(fx)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rd, err := measure(ctx, fx[i], sizes[i])
			if err != nil {
				return nil, fmt.Errorf("%s, %s, round %d: %w", sc.Name, fx[i].Impl.Name, r+1, err)
			}
			rounds[i] = append(rounds[i], rd)
		}
	}

	res := make([]Result, len(fx))
	for i, f := range fx {
		res[i] = summarize(sc, f.Impl.Name, rounds[i])
		if res[i].AllocsPerOp, res[i].BytesPerOp, err = allocsPerRequest(ctx, f, cfg); err != nil {
			return nil, fmt.Errorf("%s, %s, counting allocations: %w", sc.Name, f.Impl.Name, err)
		}
	}
	for i := range res {
		res[i].XBare = ratio(res, i, Bare)
		res[i].XHTTPCacheMem = ratio(res, i, HTTPCacheMem)
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "%-22s %-28s %6d req/batch  %12.0f ns/req  %8.1f allocs  %6.2f× bare\n",
				sc.Name, res[i].Impl, res[i].Rounds[0].N, res[i].NsPerOp, res[i].AllocsPerOp, res[i].XBare)
		}
	}
	return res, nil
}

// calibrate finds the batch size that takes about cfg.BatchTime, the way
// testing.B grows b.N; the batches it runs warm the implementation up.
func calibrate(ctx context.Context, f *Fixture, cfg Config) (int, error) {
	n := 1
	for {
		b, err := f.Prepare(ctx, n)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		if err := b.Run(); err != nil {
			return 0, err
		}
		d := time.Since(start)
		if err := b.Verify(); err != nil {
			return 0, err
		}
		per := float64(d) / float64(b.N)
		if d >= cfg.BatchTime/4 || b.N >= cfg.MaxBatch || (f.Scenario.Kind == Miss && b.N < n) {
			// One more batch, of the size this estimate gives; keep the
			// lower of the two estimates, since noise only ever slows
			// a batch down.
			want := min(max(int(float64(cfg.BatchTime)/max(per, 1)), 1), cfg.MaxBatch)
			if b, err = f.Prepare(ctx, want); err != nil {
				return 0, err
			}
			start = time.Now()
			if err := b.Run(); err != nil {
				return 0, err
			}
			d = time.Since(start)
			if err := b.Verify(); err != nil {
				return 0, err
			}
			per = min(per, float64(d)/float64(b.N))
			return min(max(int(float64(cfg.BatchTime)/max(per, 1)), 1), cfg.MaxBatch), nil
		}
		next := int(float64(cfg.BatchTime/4)/max(per, 1)*1.2) + 1
		n = min(max(next, 2*b.N), 100*b.N, cfg.MaxBatch)
	}
}

// measure runs one batch of n requests and reads the time and the
// allocation counters around it.
func measure(ctx context.Context, f *Fixture, n int) (Round, error) {
	b, err := f.Prepare(ctx, n)
	if err != nil {
		return Round{}, err
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	err = b.Run()
	d := time.Since(start)
	runtime.ReadMemStats(&m1)
	if err != nil {
		return Round{}, err
	}
	if err := b.Verify(); err != nil {
		return Round{}, err
	}
	return Round{N: b.N, Duration: d, Mallocs: m1.Mallocs - m0.Mallocs, Bytes: m1.TotalAlloc - m0.TotalAlloc}, nil
}

// allocsPerRequest counts the allocations of one request apart from those a
// batch makes once, whatever its size (timers, the runtime's bookkeeping),
// which would otherwise weigh more in the short batches of big bodies: it
// is the difference between a batch of 4 and one of 20 requests (per
// worker), divided by the 16 requests that set them apart.
func allocsPerRequest(ctx context.Context, f *Fixture, cfg Config) (allocs, bytes float64, err error) {
	w := max(f.Scenario.Workers, 1)
	small, big := 4*w, 20*w
	if cfg.Fixed > 0 { // a smoke run: as little as still subtracts
		small, big = w, 2*w
	}
	s, err := measure(ctx, f, small)
	if err != nil {
		return 0, 0, err
	}
	b, err := measure(ctx, f, big)
	if err != nil {
		return 0, 0, err
	}
	n := float64(b.N - s.N)
	return (float64(b.Mallocs) - float64(s.Mallocs)) / n, (float64(b.Bytes) - float64(s.Bytes)) / n, nil
}

func summarize(sc Scenario, impl string, rounds []Round) Result {
	r := Result{Scenario: sc, Impl: impl, Rounds: rounds, XBare: math.NaN(), XHTTPCacheMem: math.NaN()}
	ns := make([]float64, len(rounds))
	var n, mallocs, bytes float64
	for i, rd := range rounds {
		ns[i] = rd.NsPerOp()
		n += float64(rd.N)
		mallocs += float64(rd.Mallocs)
		bytes += float64(rd.Bytes)
	}
	r.NsPerOp = median(ns)
	r.MinNs, r.MaxNs = slices.Min(ns), slices.Max(ns)
	r.AllocsPerOp, r.BytesPerOp = mallocs/n, bytes/n
	return r
}

// ratio is the median over rounds of res[i]'s ns/request divided by that
// of the implementation named ref in the same round: each round's ratio
// compares two batches run back to back, under the same machine load.
func ratio(res []Result, i int, ref string) float64 {
	j := slices.IndexFunc(res, func(r Result) bool { return r.Impl == ref })
	if j < 0 {
		return math.NaN()
	}
	q := make([]float64, len(res[i].Rounds))
	for r := range q {
		q[r] = res[i].Rounds[r].NsPerOp() / res[j].Rounds[r].NsPerOp()
	}
	return median(q)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Find returns the result for scenario name and implementation impl.
func (r *Report) Find(scenario, impl string) (Result, bool) {
	for _, x := range r.Results {
		if x.Scenario.Name == scenario && x.Impl == impl {
			return x, true
		}
	}
	return Result{}, false
}
