package main

import (
	"math"
	"sync"
	"testing"
	"time"
)

// within reports whether got is within the histogram's relative precision
// (1/subBuckets) of want.
func within(got, want time.Duration) bool {
	tol := float64(want) / subBuckets
	return math.Abs(float64(got-want)) <= tol
}

func TestHistogramUniformMilliseconds(t *testing.T) {
	var h histogram
	// 1ms, 2ms, ..., 1000ms in a scrambled order: percentiles must not depend
	// on insertion order.
	for i := 0; i < 1000; i++ {
		v := (i*337)%1000 + 1
		h.Record(time.Duration(v) * time.Millisecond)
	}
	if h.Count() != 1000 {
		t.Fatalf("count = %d, want 1000", h.Count())
	}
	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0.50, 500 * time.Millisecond},
		{0.95, 950 * time.Millisecond},
		{0.99, 990 * time.Millisecond},
		{0.10, 100 * time.Millisecond},
	}
	for _, c := range cases {
		if got := h.Quantile(c.q); !within(got, c.want) {
			t.Errorf("Quantile(%v) = %v, want %v ±%.2f%%", c.q, got, c.want, 100.0/subBuckets)
		}
	}
	s := h.Summary()
	if s.MinMS != 1 || s.MaxMS != 1000 {
		t.Errorf("min/max = %v/%v ms, want exactly 1/1000", s.MinMS, s.MaxMS)
	}
	if s.MeanMS != 500.5 {
		t.Errorf("mean = %v ms, want exactly 500.5", s.MeanMS)
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	var h histogram
	for v := 1; v <= 100; v++ {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 50 * time.Microsecond},
		{0.95, 95 * time.Microsecond},
		{0.99, 99 * time.Microsecond},
		{1, 100 * time.Microsecond},
		{0, 1 * time.Microsecond},
	} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want exactly %v", c.q, got, c.want)
		}
	}
}

func TestHistogramSkewedDistribution(t *testing.T) {
	// 990 fast requests and 10 very slow ones: p50 and p95 must see the fast
	// mode, p99 the edge of it, and max the slow outlier.
	var h histogram
	for i := 0; i < 990; i++ {
		h.Record(2 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		h.Record(3 * time.Second)
	}
	if got := h.Quantile(0.5); !within(got, 2*time.Millisecond) {
		t.Errorf("p50 = %v, want ~2ms", got)
	}
	if got := h.Quantile(0.99); !within(got, 2*time.Millisecond) {
		t.Errorf("p99 = %v, want ~2ms (rank 990 is the last fast request)", got)
	}
	if got := h.Quantile(0.991); !within(got, 3*time.Second) {
		t.Errorf("p99.1 = %v, want ~3s", got)
	}
	if got := h.Quantile(1); got != 3*time.Second {
		t.Errorf("max = %v, want 3s", got)
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	var h histogram
	if got := h.Quantile(0.99); got != 0 {
		t.Errorf("empty p99 = %v, want 0", got)
	}
	if s := h.Summary(); s.Count != 0 || s.MaxMS != 0 {
		t.Errorf("empty summary = %+v", s)
	}
	h.Record(-5 * time.Millisecond)
	if got := h.Quantile(1); got != 0 {
		t.Errorf("negative duration recorded as %v, want 0", got)
	}
}

func TestBucketBoundsCoverValues(t *testing.T) {
	// Every value must land in a bucket whose bounds contain it, and the
	// bucket width must respect the advertised precision.
	values := []uint64{0, 1, 127, 128, 255, 256, 257, 1000, 4095, 4096, 123456789, 1 << 40, math.MaxUint64 >> 1, math.MaxUint64}
	for v := uint64(0); v < 5000; v += 7 {
		values = append(values, v)
	}
	for _, v := range values {
		i := bucketIndex(v)
		if i < 0 || i >= histogramBuckets {
			t.Fatalf("bucketIndex(%d) = %d out of range", v, i)
		}
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d with bounds [%d,%d]", v, i, lo, hi)
		}
		if hi > lo && float64(hi-lo+1)/float64(lo) > 1.0/subBuckets+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d", i, lo, hi, subBuckets)
		}
	}
}

func TestHistogramConcurrentRecord(t *testing.T) {
	var h histogram
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				h.Record(time.Duration(g*10000+i) * time.Microsecond)
			}
		}(g)
	}
	wg.Wait()
	s := h.Summary()
	if s.Count != 80000 {
		t.Fatalf("count = %d, want 80000", s.Count)
	}
	if s.MinMS != 0 || s.MaxMS != 79.999 {
		t.Errorf("min/max = %v/%v, want 0/79.999", s.MinMS, s.MaxMS)
	}
	if got := h.Quantile(0.5); !within(got, 40*time.Millisecond) {
		t.Errorf("p50 = %v, want ~40ms", got)
	}
}

func TestSummarizeSamples(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	s := summarizeSamples(ms(900, 100, 300, 200, 500))
	if s.FirstMS != 900 || s.MinMS != 100 || s.MedianMS != 300 || s.MaxMS != 900 || s.Count != 5 {
		t.Errorf("odd summary = %+v", s)
	}
	s = summarizeSamples(ms(40, 10, 20, 30))
	if s.MedianMS != 25 {
		t.Errorf("even median = %v, want 25", s.MedianMS)
	}
	if s := summarizeSamples(nil); s.Count != 0 {
		t.Errorf("empty summary = %+v", s)
	}
}
