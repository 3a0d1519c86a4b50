package benchkit

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// chartColors are the bar colours of the implementations other than
// bare-304, in Impls order.
var chartColors = map[string]string{
	EtagcacheMem:   "#1b7837",
	EtagcacheBolt:  "#5aae61",
	EtagcacheAdapt: "#a6dba0",
	HTTPCacheMem:   "#c2a5cf",
	HTTPCacheDisk:  "#762a83",
}

// SVG draws the report's ratios to bare-304 as horizontal bars on a
// logarithmic scale, one group per scenario: a chart with no dependency.
func (r *Report) SVG() string {
	type row struct {
		scenario string
		bars     []Result
	}
	var rows []row
	hi := 2.0
	for _, x := range r.Results {
		if x.Impl == Bare || math.IsNaN(x.XBare) {
			continue
		}
		if len(rows) == 0 || rows[len(rows)-1].scenario != x.Scenario.Name {
			rows = append(rows, row{scenario: x.Scenario.Name})
		}
		rows[len(rows)-1].bars = append(rows[len(rows)-1].bars, x)
		hi = max(hi, x.XBare)
	}
	const (
		left, right, top = 170.0, 70.0, 60.0
		plotW            = 640.0
		barH, gap        = 11.0, 14.0
		lo               = 0.5
	)
	hi = math.Pow(10, math.Ceil(math.Log10(hi*1.05)*2)/2) // next half decade
	xOf := func(v float64) float64 {
		v = min(max(v, lo), hi)
		return left + (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*plotW
	}
	h := top
	for _, rw := range rows {
		h += float64(len(rw.bars))*barH + gap
	}
	height := h + 40
	width := left + plotW + right

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" font-weight="bold">Time per request, ratio to bare-304 (log scale; 1× = bare-304, median of interleaved rounds)</text>`+"\n", left-150)
	// Legend.
	lx := left - 150
	for _, name := range Impls[1:] {
		fmt.Fprintf(&b, `<rect x="%.0f" y="32" width="10" height="10" fill="%s"/><text x="%.0f" y="41">%s</text>`+"\n", lx, chartColors[name], lx+14, name)
		lx += 14 + 7*float64(len(name)) + 18
	}
	// Grid.
	for _, v := range []float64{0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000} {
		if v > hi {
			break
		}
		x := xOf(v)
		stroke, w := "#ddd", 1.0
		if v == 1 {
			stroke, w = "#333", 1.5
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="%.1f"/>`+"\n", x, top-6, x, h, stroke, w)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%s×</text>`+"\n", x, h+14, trimFloat(v))
	}
	y := top
	for _, rw := range rows {
		mid := y + float64(len(rw.bars))*barH/2
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" dominant-baseline="middle" font-weight="bold">%s</text>`+"\n", left-8, mid, html.EscapeString(rw.scenario))
		for _, x := range rw.bars {
			x0, x1 := xOf(1), xOf(x.XBare)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %.2f× bare-304</title></rect>`+"\n",
				min(x0, x1), y+1, math.Abs(x1-x0)+0.5, barH-2, chartColors[x.Impl], html.EscapeString(x.Scenario.Name), x.Impl, x.XBare)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" font-size="9" fill="#333">%.2f×</text>`+"\n", max(x0, x1)+3, y+barH/2, x.XBare)
			y += barH
		}
		y += gap
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".")
}
