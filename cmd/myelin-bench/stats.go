package main

import (
	"math"
	"math/bits"
	"sort"
	"sync/atomic"
	"time"
)

// The histogram is log-linear, in the style of HdrHistogram: values are kept in
// microseconds, every value below 2*subBuckets µs has a bucket of its own, and
// above that each power of two is split into subBuckets equal slices. That
// bounds the relative error of any reported percentile by 1/subBuckets (<0.8%)
// while using a fixed amount of memory however many values are recorded, so a
// long run or millions of deliveries cost nothing extra.
const (
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits
	// A uint64 has 64 bits; the largest exponent is 64-(subBucketBits+1).
	histogramBuckets = (64-subBucketBits-1)*subBuckets + 2*subBuckets
)

// histogram is a concurrency-safe latency histogram. Record may be called from
// any number of goroutines; it only does atomic increments, so it can sit on
// the hot path of a sync loop without a lock.
type histogram struct {
	counts [histogramBuckets]atomic.Uint64
	count  atomic.Uint64
	sumUS  atomic.Uint64
	minUS  atomic.Uint64 // stored as value+1 so that zero means "unset"
	maxUS  atomic.Uint64
}

// bucketIndex maps a value in microseconds to its bucket.
func bucketIndex(v uint64) int {
	e := bits.Len64(v) - (subBucketBits + 1)
	if e < 0 {
		e = 0
	}
	return e*subBuckets + int(v>>uint(e))
}

// bucketBounds returns the smallest and largest value (inclusive, µs) that
// land in bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 2*subBuckets {
		return uint64(i), uint64(i)
	}
	e := i/subBuckets - 1
	m := uint64(i - e*subBuckets)
	lo = m << uint(e)
	hi = ((m + 1) << uint(e)) - 1
	return lo, hi
}

// Record adds one observation. Negative durations count as zero.
func (h *histogram) Record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	v := uint64(us)
	h.counts[bucketIndex(v)].Add(1)
	h.count.Add(1)
	h.sumUS.Add(v)
	for {
		cur := h.minUS.Load()
		if cur != 0 && cur-1 <= v {
			break
		}
		if h.minUS.CompareAndSwap(cur, v+1) {
			break
		}
	}
	for {
		cur := h.maxUS.Load()
		if cur >= v || h.maxUS.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Count is the number of recorded observations.
func (h *histogram) Count() uint64 { return h.count.Load() }

// Quantile returns the value below or at which a fraction q (0..1) of the
// observations lie, using the nearest-rank definition: the smallest recorded
// bucket whose cumulative count reaches ceil(q*n). The value reported for a
// bucket is its midpoint, clamped to the exact minimum and maximum seen, so
// Quantile(0) is the minimum and Quantile(1) the maximum.
func (h *histogram) Quantile(q float64) time.Duration {
	return h.snapshot().quantile(q)
}

// Summary computes the usual percentiles in one pass over a consistent copy.
func (h *histogram) Summary() latencySummary {
	return h.snapshot().summary()
}

// histSnapshot is a point-in-time copy of a histogram; percentiles computed
// from one snapshot are consistent with each other even while Record runs.
type histSnapshot struct {
	counts []uint64
	n      uint64
	sumUS  uint64
	minUS  uint64
	maxUS  uint64
}

func (h *histogram) snapshot() histSnapshot {
	s := histSnapshot{counts: make([]uint64, histogramBuckets)}
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.n += c
	}
	s.sumUS = h.sumUS.Load()
	if m := h.minUS.Load(); m > 0 {
		s.minUS = m - 1
	}
	s.maxUS = h.maxUS.Load()
	return s
}

func (s histSnapshot) quantile(q float64) time.Duration {
	if s.n == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(s.minUS) * time.Microsecond
	}
	if q >= 1 {
		return time.Duration(s.maxUS) * time.Microsecond
	}
	rank := uint64(math.Ceil(q * float64(s.n)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range s.counts {
		if c == 0 {
			continue
		}
		cum += c
		if cum >= rank {
			lo, hi := bucketBounds(i)
			v := lo + (hi-lo)/2
			v = max(v, s.minUS)
			v = min(v, s.maxUS)
			return time.Duration(v) * time.Microsecond
		}
	}
	return time.Duration(s.maxUS) * time.Microsecond
}

func (s histSnapshot) summary() latencySummary {
	ls := latencySummary{Count: s.n}
	if s.n == 0 {
		return ls
	}
	ls.MinMS = durMS(s.quantile(0))
	ls.MeanMS = math.Round(float64(s.sumUS)/float64(s.n)) / 1000
	ls.P50MS = durMS(s.quantile(0.50))
	ls.P95MS = durMS(s.quantile(0.95))
	ls.P99MS = durMS(s.quantile(0.99))
	ls.MaxMS = durMS(s.quantile(1))
	return ls
}

// latencySummary is the reported form of a histogram, in milliseconds.
type latencySummary struct {
	Name   string  `json:"name"`
	Count  uint64  `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P95MS  float64 `json:"p95_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func durMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sampleStats summarises a short list of exact samples (used where there are
// only a handful of observations, such as repeated initial syncs).
type sampleStats struct {
	Count    int     `json:"count"`
	FirstMS  float64 `json:"first_ms"`
	MinMS    float64 `json:"min_ms"`
	MedianMS float64 `json:"median_ms"`
	MaxMS    float64 `json:"max_ms"`
}

func summarizeSamples(samples []time.Duration) sampleStats {
	st := sampleStats{Count: len(samples)}
	if len(samples) == 0 {
		return st
	}
	st.FirstMS = durMS(samples[0])
	sorted := append([]time.Duration(nil), samples...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	st.MinMS = durMS(sorted[0])
	st.MaxMS = durMS(sorted[len(sorted)-1])
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		st.MedianMS = durMS(sorted[mid])
	} else {
		st.MedianMS = (durMS(sorted[mid-1]) + durMS(sorted[mid])) / 2
	}
	return st
}
