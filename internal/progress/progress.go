// Package progress reports the progress of long phases: a bar per phase on a terminal, JSON lines
// (one object per event) when asked, or nothing.
package progress

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrMode reports an unknown progress mode.
var ErrMode = errors.New("unknown progress mode")

// Mode selects how progress is shown.
type Mode string

// The progress modes.
const (
	// Auto shows a bar when the writer is a terminal and nothing otherwise.
	Auto Mode = "auto"
	// Bar always draws a bar.
	Bar Mode = "bar"
	// JSON writes one JSON object per line.
	JSON Mode = "json"
	// None shows nothing.
	None Mode = "none"
)

// Reporter writes progress events. It is safe for concurrent use.
type Reporter struct {
	mu   sync.Mutex
	mode Mode
	w    io.Writer
	now  func() time.Time
}

// New returns a Reporter writing to w. Auto becomes Bar when w is a terminal, None otherwise.
func New(mode Mode, w io.Writer) (*Reporter, error) {
	switch mode {
	case Bar, JSON, None:
	case Auto, "":
		mode = None
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				mode = Bar
			}
		}
	default:
		return nil, fmt.Errorf("%w %q (want auto, bar, json or none)", ErrMode, mode)
	}
	return &Reporter{mode: mode, w: w, now: time.Now}, nil
}

// Discard is a Reporter that shows nothing.
func Discard() *Reporter { return &Reporter{mode: None, w: io.Discard, now: time.Now} }

// Mode returns the effective mode.
func (r *Reporter) Mode() Mode { return r.mode }

// Event writes a JSON-lines event (only in JSON mode); fields are merged into the object.
func (r *Reporter) Event(kind string, fields map[string]any) {
	if r == nil || r.mode != JSON {
		return
	}
	obj := map[string]any{"event": kind, "time": r.now().UTC().Format(time.RFC3339Nano)}
	for k, v := range fields {
		obj[k] = v
	}
	b, err := json.Marshal(obj)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"event": kind, "error": err.Error()})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.Write(append(b, '\n'))
}

// Phase is one phase with a known amount of work.
type Phase struct {
	r         *Reporter
	name      string
	total     int
	done      int
	start     time.Time
	lastDraw  time.Time
	finished  bool
	lastWidth int
}

// Phase starts a phase of total units of work.
func (r *Reporter) Phase(name string, total int) *Phase {
	if r == nil {
		r = Discard()
	}
	p := &Phase{r: r, name: name, total: total, start: r.now()}
	r.Event("phase_start", map[string]any{"phase": name, "total": total})
	p.draw(true)
	return p
}

// Set records that done units are finished.
func (p *Phase) Set(done int) {
	p.done = done
	p.draw(false)
}

// Add records n more finished units.
func (p *Phase) Add(n int) { p.Set(p.done + n) }

// Done ends the phase.
func (p *Phase) Done() {
	if p.finished {
		return
	}
	p.finished = true
	p.done = p.total
	p.draw(true)
	if p.r.mode == Bar {
		p.r.mu.Lock()
		fmt.Fprintln(p.r.w)
		p.r.mu.Unlock()
	}
	p.r.Event("phase_end", map[string]any{"phase": p.name, "total": p.total, "seconds": p.r.now().Sub(p.start).Seconds()})
}

func (p *Phase) draw(force bool) {
	r := p.r
	now := r.now()
	if !force && now.Sub(p.lastDraw) < 100*time.Millisecond {
		return
	}
	p.lastDraw = now
	switch r.mode {
	case JSON:
		if !force {
			r.Event("progress", map[string]any{"phase": p.name, "done": p.done, "total": p.total})
		}
	case Bar:
		const width = 30
		fill := width
		if p.total > 0 {
			fill = min(width, width*p.done/p.total)
		}
		line := fmt.Sprintf("\r%-22s [%s%s] %d/%d %5.1fs", p.name, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
			p.done, p.total, now.Sub(p.start).Seconds())
		r.mu.Lock()
		fmt.Fprint(r.w, line)
		r.mu.Unlock()
	}
}
