package benchkit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Target is one of the goals of the comparison, checked against a report.
type Target struct {
	Name  string
	Value float64
	Limit float64
	Unit  string // "×" for ratios, else what Value counts
	Met   bool
	// Best is, for a ratio, the ratio of the fastest rounds of the two
	// implementations (noise only ever slows a batch down); NaN otherwise.
	Best float64
	// Noise is, for a measure with no fastest round (an allocation
	// spread), how much the same measure varies for bare-304, which does
	// the same work at every size: what the whole-process counters drift
	// by on their own. NaN when not known.
	Noise float64
}

// Verdict says whether the target was met: "met" by the median; "within
// noise" when the median misses but the fastest rounds meet it (for a
// ratio) or the miss is no larger than bare-304's own variation (for a
// spread), so that this run cannot tell it from noise; else "missed".
func (t Target) Verdict() string {
	switch {
	case t.Met:
		return "met"
	case !math.IsNaN(t.Best) && t.Best <= t.Limit:
		return "within noise"
	case !math.IsNaN(t.Noise) && t.Value <= t.Limit+t.Noise:
		return "within noise"
	}
	return "missed"
}

// Targets checks the goals that the report has results for:
//
//   - etagcache-mem at most 1.10× bare-304 in steady 304 state, every size;
//   - etagcache-bbolt at most 1.25× bare-304 at 1 KiB, 1.5× at 16 MiB;
//   - etagcache-mem's allocations per revalidation at most bare-304's + 20
//     at every size, and that excess the same at every size (within 1). The
//     excess, not the count itself: a batch also has a few allocations of
//     its own (runtime, timers), which weigh more per request in the big
//     bodies' short batches, for bare-304 as for the others.
//   - 8 goroutines × 64 URLs: etagcache-mem at most 1.15× bare-304.
func (r *Report) Targets() []Target {
	var ts []Target
	ratio := func(scenario, impl string, limit float64) {
		x, ok1 := r.Find(scenario, impl)
		b, ok2 := r.Find(scenario, Bare)
		if ok1 && ok2 {
			ts = append(ts, Target{Name: fmt.Sprintf("%s, %s ≤ %.2f× bare-304", scenario, impl, limit), Value: x.XBare, Limit: limit, Unit: "×",
				Met: x.XBare <= limit, Best: x.MinNs / b.MinNs, Noise: math.NaN()})
		}
	}
	for _, n := range Sizes {
		ratio("304 "+SizeName(n), EtagcacheMem, 1.10)
	}
	ratio("304 1KiB", EtagcacheBolt, 1.25)
	ratio("304 16MiB", EtagcacheBolt, 1.5)

	lo, hi := math.Inf(1), math.Inf(-1)
	bareLo, bareHi := math.Inf(1), math.Inf(-1)
	var sizes int
	for _, n := range Sizes {
		sc := "304 " + SizeName(n)
		m, ok1 := r.Find(sc, EtagcacheMem)
		b, ok2 := r.Find(sc, Bare)
		if !ok1 {
			continue
		}
		if ok2 {
			extra := m.AllocsPerOp - b.AllocsPerOp
			sizes++
			lo, hi = min(lo, extra), max(hi, extra)
			bareLo, bareHi = min(bareLo, b.AllocsPerOp), max(bareHi, b.AllocsPerOp)
			ts = append(ts, Target{Name: fmt.Sprintf("%s, %s allocs/request ≤ bare-304's + 20", sc, EtagcacheMem), Value: extra, Limit: 20, Unit: "allocs more", Met: extra <= 20, Best: math.NaN(), Noise: math.NaN()})
		}
	}
	if sizes > 1 {
		ts = append(ts, Target{Name: fmt.Sprintf("%s allocs/request over bare-304's independent of body size (spread over %d sizes ≤ 1)", EtagcacheMem, sizes), Value: hi - lo, Limit: 1, Unit: "allocs spread", Met: hi-lo <= 1, Best: math.NaN(), Noise: bareHi - bareLo})
	}
	for _, sc := range r.Config.Scenarios {
		if sc.Workers > 1 {
			ratio(sc.Name, EtagcacheMem, 1.15)
		}
	}
	return ts
}

// Markdown renders the report: the table, its footnotes and the targets.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# etagcache vs gregjones/httpcache: revalidation benchmark\n\n")
	fmt.Fprintf(&b, "%s, %s/%s, GOMAXPROCS=%d (%d CPUs); %d interleaved rounds, ~%v per batch; run took %v.\n\n",
		r.GoVersion, r.GOOS, r.GOARCH, r.GOMAXPROCS, r.NumCPU, r.Config.Rounds, batchDesc(r.Config), r.Duration.Round(100*time.Millisecond))
	b.WriteString("| scenario | implementation | ns/request | allocs/request | bytes/request (allocated) | ratio to bare-304 | ratio to httpcache-mem | rounds: min–max ns/request (requests/batch) |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|\n")
	for _, x := range r.Results {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s–%s (%d) |\n",
			x.Scenario.Name, x.Impl, group(x.NsPerOp), strconv.FormatFloat(x.AllocsPerOp, 'f', 1, 64), group(x.BytesPerOp),
			times(x.XBare), times(x.XHTTPCacheMem), group(x.MinNs), group(x.MaxNs), x.Rounds[0].N)
	}
	b.WriteString(Footnotes)
	if ts := r.Targets(); len(ts) > 0 {
		b.WriteString("\n## Targets (steady 304 state, this run)\n\n" +
			"Ratios are medians of per-round ratios, as in the table. The last column is, for a ratio, the ratio of the two implementations' fastest rounds " +
			"(noise only ever slows a batch down), and for the allocation spread, bare-304's own spread over the same sizes (the whole-process counters' drift). " +
			"A target missed by the median but met by the fastest rounds, or missed by no more than bare-304's own spread, is \"within noise\": this run cannot tell it from noise.\n\n" +
			"| target | measured | | fastest rounds / noise |\n|---|--:|---|--:|\n")
		for _, t := range ts {
			verdict := t.Verdict()
			if verdict == "missed" {
				verdict = "**missed**"
			}
			v := strconv.FormatFloat(t.Value, 'f', 2, 64)
			if t.Unit == "×" {
				v += "×"
			} else {
				v += " " + t.Unit
			}
			last := times(t.Best)
			if !math.IsNaN(t.Noise) {
				last = "bare-304's spread " + strconv.FormatFloat(t.Noise, 'f', 2, 64)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, v, verdict, last)
		}
	}
	return b.String()
}

func batchDesc(c Config) string {
	if c.Fixed > 0 {
		return fmt.Sprintf("%d requests (per worker)", c.Fixed)
	}
	return c.BatchTime.String()
}

// Footnotes explain how the table was measured.
const Footnotes = `
- All implementations talk to one local origin (httptest, loopback) that sends a strong ETag and ` + "`Cache-Control: no-cache`" + ` (so httpcache revalidates every time) and answers a matching If-None-Match with an empty 304. Each implementation has its own http.Transport (MaxIdleConnsPerHost 16), so connection reuse is the same for all.
- **bare-304** is the floor: a plain http.Transport whose caller sends If-None-Match itself and gets the empty 304. For fairness its caller then "serves" the body it already holds, reading it out of a bytes.Reader, as a caller of a cache reads the 200's body. In the miss rows bare-304 is a plain GET without a cache.
- **304** rows: the entry is stored and revalidated once before measuring; every measured request is a revalidation answered 304 (checked against the origin's counters after every batch). **miss** rows: every request is the first fetch of a fresh URL, into a cache emptied (untimed) before each batch; the body is read to EOF, so the caches store it within the measured time.
- Every request checks status, ETag, length and every byte of the body (bytes.Equal against the origin's) after reading it into a reused buffer. That costs the same for every implementation, and is part of each ns/request, also bare-304's.
- Rounds are interleaved: in each round every implementation runs one batch (batch sizes calibrated per implementation to the batch time), in an order rotated each round, so that drift of the shared machine hits all alike. ns/request is the median over rounds; the ratios are the medians over rounds of the ratio of two batches of the same round.
- allocs/request and bytes/request are runtime.MemStats deltas (Mallocs, TotalAlloc), measured after the timed rounds as the difference between a batch of 20 and a batch of 4 requests (per worker), divided by 16: so what a batch allocates once, whatever its size (timers, the runtime's bookkeeping), cancels out. They count the whole process, so they include the in-process origin's allocations for the request (the same for every implementation) as well as the client's: compare implementations within a scenario.
- etagcache-bbolt: OpenBoltStore in a temporary folder; httpcache-disk: diskcache.New in a temporary folder; etagcache-httpcache-adapter: httpcachestore.New(httpcache.NewMemoryCache()).
`

func times(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', 2, 64) + "×"
}

// group writes a number rounded to an integer, with commas between groups
// of three digits: 1234567 → 1,234,567.
func group(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
