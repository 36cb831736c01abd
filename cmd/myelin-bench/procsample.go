package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of utime/stime in /proc/PID/stat.
// Linux fixes it at 100 on every architecture the kernel exposes to user space
// (it is independent of the kernel's internal HZ), and reading it through
// sysconf would need cgo.
const clockTicksPerSecond = 100

// procReading is one look at a process: its resident set and the CPU time it
// has used so far.
type procReading struct {
	at       time.Time
	rssBytes uint64
	cpuTicks uint64 // utime + stime, in clockTicksPerSecond units
}

// readProc samples /proc/PID/status (VmRSS) and /proc/PID/stat (utime+stime).
func readProc(pid int) (procReading, error) {
	at := time.Now()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procReading{}, err
	}
	rss, err := parseStatusRSS(status)
	if err != nil {
		return procReading{}, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procReading{}, err
	}
	ticks, err := parseStatCPU(stat)
	if err != nil {
		return procReading{}, err
	}
	return procReading{at: at, rssBytes: rss, cpuTicks: ticks}, nil
}

// parseStatusRSS extracts VmRSS from the text of /proc/PID/status. The kernel
// always reports it in kB.
func parseStatusRSS(status []byte) (uint64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) < 1 {
			break
		}
		kb, err := strconv.ParseUint(string(fields[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		unit := "kB"
		if len(fields) > 1 {
			unit = string(fields[1])
		}
		if unit != "kB" {
			return 0, fmt.Errorf("VmRSS: unexpected unit %q", unit)
		}
		return kb * 1024, nil
	}
	// Kernel threads and zombies have no VmRSS line.
	return 0, errors.New("no VmRSS line (is the process a zombie?)")
}

// parseStatCPU returns utime+stime from the text of /proc/PID/stat. The second
// field (comm) is in parentheses and may itself contain spaces and
// parentheses, so fields are counted from the last ')'.
func parseStatCPU(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("malformed stat: no ')'")
	}
	// After "pid (comm) " the fields start at number 3 (state); utime and
	// stime are fields 14 and 15, i.e. indexes 11 and 12 here.
	fields := bytes.Fields(stat[end+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed stat: %d fields after comm", len(fields))
	}
	utime, err := strconv.ParseUint(string(fields[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseUint(string(fields[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

// phaseStats is what the sampler reports for one named phase of a run.
type phaseStats struct {
	Process   string  `json:"process"`
	Phase     string  `json:"phase"`
	Samples   int     `json:"samples"`
	Seconds   float64 `json:"seconds"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	MeanRSSMB float64 `json:"mean_rss_mb"`
	LastRSSMB float64 `json:"last_rss_mb"`
	// MeanCPUPercent is left out for phases shorter than a second, where
	// the 10ms granularity of the kernel's counters makes it meaningless.
	MeanCPUPercent *float64 `json:"mean_cpu_percent,omitempty"`
}

// phaseAcc accumulates samples for one phase. CPU is measured between the
// first and the last reading of the phase, which share their boundary reading
// with the neighbouring phases so no CPU time falls between two phases.
type phaseAcc struct {
	name         string
	first, last  procReading
	samples      int
	rssSum, peak uint64
}

func (p *phaseAcc) add(r procReading) {
	p.last = r
	p.samples++
	p.rssSum += r.rssBytes
	p.peak = max(p.peak, r.rssBytes)
}

func (p *phaseAcc) stats(process string) phaseStats {
	const mb = 1024 * 1024
	st := phaseStats{Process: process, Phase: p.name, Samples: p.samples}
	if p.samples == 0 {
		return st
	}
	wall := p.last.at.Sub(p.first.at).Seconds()
	st.Seconds = round2(wall)
	st.PeakRSSMB = round2(float64(p.peak) / mb)
	st.MeanRSSMB = round2(float64(p.rssSum) / float64(p.samples) / mb)
	st.LastRSSMB = round2(float64(p.last.rssBytes) / mb)
	if wall >= 1 {
		cpu := float64(p.last.cpuTicks-p.first.cpuTicks) / clockTicksPerSecond
		pct := round2(cpu / wall * 100)
		st.MeanCPUPercent = &pct
	}
	return st
}

// procSampler samples one process at a fixed interval and splits the samples
// into phases (setup, run, drain...) so a report can tell the memory of an idle
// server from that of a loaded one. A nil *procSampler is valid and does
// nothing, which keeps the scenarios free of "if --pid was given" checks.
type procSampler struct {
	pid      int
	label    string
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	phases []*phaseAcc
	cur    *phaseAcc
	err    error
	done   chan struct{}
	cancel context.CancelFunc
}

// startProcSampler takes a first reading (failing fast if the PID cannot be
// read) and then samples every interval until Stop or ctx ends.
func startProcSampler(ctx context.Context, pid int, label string, interval time.Duration, log *slog.Logger) (*procSampler, error) {
	r, err := readProc(pid)
	if err != nil {
		return nil, fmt.Errorf("sampling pid %d: %w", pid, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &procSampler{pid: pid, label: label, interval: interval, log: log, done: make(chan struct{}), cancel: cancel}
	s.cur = &phaseAcc{name: "start", first: r}
	s.cur.add(r)
	s.phases = append(s.phases, s.cur)
	go s.loop(ctx)
	return s, nil
}

func (s *procSampler) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.sample() {
			return
		}
	}
}

// sample takes one reading into the current phase; it returns false once the
// process can no longer be read (it exited), which ends sampling.
func (s *procSampler) sample() bool {
	r, err := readProc(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
			if s.log != nil {
				s.log.Warn("process sampling stopped", "process", s.label, "pid", s.pid, "err", err)
			}
		}
		return false
	}
	s.cur.add(r)
	return true
}

// Phase closes the current phase with a fresh reading and opens a new one
// starting from that same reading.
func (s *procSampler) Phase(name string) {
	if s == nil {
		return
	}
	r, err := readProc(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || s.err != nil {
		return
	}
	s.cur.add(r)
	if s.cur.samples <= 2 && s.cur.name == "start" {
		// Nothing worth reporting happened in the implicit first phase:
		// rename it rather than keep a zero-length row.
		s.cur.name = name
		return
	}
	next := &phaseAcc{name: name, first: r}
	next.add(r)
	s.cur = next
	s.phases = append(s.phases, next)
}

// Stop ends sampling and returns per-phase statistics.
func (s *procSampler) Stop() []phaseStats {
	if s == nil {
		return nil
	}
	s.sample()
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]phaseStats, 0, len(s.phases))
	for _, p := range s.phases {
		out = append(out, p.stats(s.label))
	}
	return out
}
