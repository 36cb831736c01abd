package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// field is one named value of a report; fields keeps them in the order the
// scenario added them, for both the table and the JSON object.
type field struct {
	Name  string
	Value any
	Unit  string
}

type fields []field

// MarshalJSON renders the fields as a JSON object in insertion order; a
// field with a unit gets it in its key, e.g. "send throughput (events/s)".
func (fs fields) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		name := f.Name
		if f.Unit != "" {
			name += " (" + f.Unit + ")"
		}
		k, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// result is the outcome of one scenario run, printed as a table or JSON.
type result struct {
	Scenario    string           `json:"scenario"`
	Server      string           `json:"server"`
	StartedAt   time.Time        `json:"started_at"`
	Interrupted bool             `json:"interrupted,omitempty"`
	Params      fields           `json:"params"`
	Metrics     fields           `json:"metrics"`
	Latencies   []latencySummary `json:"latencies,omitempty"`
	Samples     []namedSamples   `json:"samples,omitempty"`
	Errors      map[string]int64 `json:"errors"`
	Process     []phaseStats     `json:"process,omitempty"`
	Notes       []string         `json:"notes,omitempty"`
}

// namedSamples is a sampleStats row with its label and an optional size.
type namedSamples struct {
	Name string `json:"name"`
	sampleStats
	Bytes int64 `json:"bytes,omitempty"`
}

func newResult(scenario string, env *env) *result {
	return &result{Scenario: scenario, Server: env.g.url, StartedAt: time.Now().UTC(), Errors: map[string]int64{}}
}

func (r *result) param(name string, v any) {
	if d, ok := v.(time.Duration); ok {
		v = d.String() // JSON would otherwise show nanoseconds
	}
	r.Params = append(r.Params, field{Name: name, Value: v})
}

func (r *result) metric(name string, v any, unit string) {
	r.Metrics = append(r.Metrics, field{Name: name, Value: v, Unit: unit})
}

func (r *result) latency(name string, h *histogram) {
	s := h.Summary()
	s.Name = name
	r.Latencies = append(r.Latencies, s)
}

func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func writeJSON(w io.Writer, r *result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeTable prints the result as aligned plain-text sections.
func writeTable(w io.Writer, r *result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	title := fmt.Sprintf("myelin-bench %s against %s", r.Scenario, r.Server)
	if r.Interrupted {
		title += " (interrupted)"
	}
	p("%s\n%s\n", title, strings.Repeat("=", len(title)))
	if len(r.Params) > 0 {
		var parts []string
		for _, f := range r.Params {
			parts = append(parts, fmt.Sprintf("%s=%s", f.Name, formatValue(f.Value)))
		}
		p("params: %s\n", strings.Join(parts, " "))
	}

	if len(r.Metrics) > 0 {
		p("\n")
		for _, f := range r.Metrics {
			p("%s\t%s\n", f.Name, strings.TrimSpace(formatValue(f.Value)+" "+f.Unit))
		}
	}

	if len(r.Latencies) > 0 {
		p("\nlatency (ms)\tcount\tmin\tmean\tp50\tp95\tp99\tmax\n")
		for _, l := range r.Latencies {
			p("%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Name, l.Count,
				ms(l.MinMS), ms(l.MeanMS), ms(l.P50MS), ms(l.P95MS), ms(l.P99MS), ms(l.MaxMS))
		}
	}

	if len(r.Samples) > 0 {
		p("\ntiming (ms)\truns\tfirst\tmin\tmedian\tmax\tresponse size\n")
		for _, s := range r.Samples {
			size := "-"
			if s.Bytes > 0 {
				size = formatBytes(s.Bytes)
			}
			p("%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Count, ms(s.FirstMS), ms(s.MinMS), ms(s.MedianMS), ms(s.MaxMS), size)
		}
	}

	if len(r.Process) > 0 {
		p("\nprocess\tphase\tseconds\tpeak RSS MB\tmean RSS MB\tmean CPU %%\n")
		for _, ph := range r.Process {
			cpu := "-"
			if ph.MeanCPUPercent != nil {
				cpu = fmt.Sprintf("%.1f", *ph.MeanCPUPercent)
			}
			p("%s\t%s\t%.1f\t%.1f\t%.1f\t%s\n", ph.Process, ph.Phase, ph.Seconds, ph.PeakRSSMB, ph.MeanRSSMB, cpu)
		}
	}

	p("\nerrors\tcount\n")
	if len(r.Errors) == 0 {
		p("(none)\t0\n")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		p("%s\t%d\n", k, r.Errors[k])
	}

	if len(r.Notes) > 0 {
		p("\n")
		for _, n := range r.Notes {
			p("note: %s\n", n)
		}
	}
	return tw.Flush()
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatValue(v any) string {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) && x < 1e15 && x > -1e15 {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%.2f", x)
	case time.Duration:
		return x.String()
	default:
		return fmt.Sprint(v)
	}
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
