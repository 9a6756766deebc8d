package unwind

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// refFDE is one FDE as binutils' readelf interprets it.
type refFDE struct {
	section    string // ".eh_frame" or ".debug_frame"
	begin, end uint64
	rows       []refRow // empty: the CIE's initial row applies
	cie        uint64
}

// refRow holds the readelf columns the table cares about.
type refRow struct {
	loc               uint64
	cfa, rbp, rsp, ra string
}

var (
	reFDE     = regexp.MustCompile(`^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)`)
	reCIE     = regexp.MustCompile(`^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ CIE`)
	reRegName = regexp.MustCompile(` \(\w+\)`)
	reSection = regexp.MustCompile(`^Contents of the (\.\w+) section`)
)

// readelfFrames parses `readelf --debug-dump=frames-interp` output.
func readelfFrames(t testing.TB, path string) []refFDE {
	t.Helper()
	// readelf exits 1 after warnings it prints for some files (libc);
	// the dump is still complete.
	out, err := exec.Command("readelf", "--debug-dump=frames-interp", path).Output()
	if err != nil && len(out) == 0 {
		t.Skipf("readelf: %v", err)
	}
	var (
		fdes    []refFDE
		cieRows = map[string]map[uint64]refRow{} // section -> CIE offset -> row
		section string
		cols    []string
		curFDE  *refFDE
		curCIE  = int64(-1)
	)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := reSection.FindStringSubmatch(line); m != nil {
			section = m[1]
			cieRows[section] = map[uint64]refRow{}
			curFDE, curCIE = nil, -1
			continue
		}
		if m := reFDE.FindStringSubmatch(line); m != nil {
			cie, _ := strconv.ParseUint(m[2], 16, 64)
			b, _ := strconv.ParseUint(m[3], 16, 64)
			e, _ := strconv.ParseUint(m[4], 16, 64)
			fdes = append(fdes, refFDE{section: section, begin: b, end: e, cie: cie})
			curFDE, curCIE = &fdes[len(fdes)-1], -1
			continue
		}
		if m := reCIE.FindStringSubmatch(line); m != nil {
			off, _ := strconv.ParseUint(m[1], 16, 64)
			curFDE, curCIE = nil, int64(off)
			continue
		}
		// "r9 (r9)": a register rule's name would split the columns.
		f := strings.Fields(reRegName.ReplaceAllString(line, ""))
		if len(f) > 1 && f[0] == "LOC" {
			cols = f
			continue
		}
		if len(f) != len(cols) || len(f) < 3 {
			continue
		}
		loc, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || len(f[0]) != 16 { // not "00000084 ZERO terminator"
			continue
		}
		r := refRow{loc: loc, rbp: "u", rsp: "u"}
		for i, c := range cols {
			switch c {
			case "CFA":
				r.cfa = f[i]
			case "rbp":
				r.rbp = f[i]
			case "rsp":
				r.rsp = f[i]
			case "ra":
				r.ra = f[i]
			}
		}
		switch {
		case curFDE != nil:
			curFDE.rows = append(curFDE.rows, r)
		case curCIE >= 0:
			cieRows[section][uint64(curCIE)] = r
		}
	}
	// FDEs without instructions get no table from readelf: their rule
	// is the CIE's initial row.
	for i := range fdes {
		f := &fdes[i]
		if len(f.rows) == 0 {
			r, ok := cieRows[f.section][f.cie]
			if !ok {
				t.Fatalf("%s: FDE %#x: no CIE %#x in readelf output", path, f.begin, f.cie)
			}
			r.loc = f.begin
			f.rows = []refRow{r}
		}
	}
	return fdes
}

// expect turns a readelf row into the table row it should produce. ok
// is false when readelf shows an expression: the table may hold a PLT
// rule or unsupported, checked separately.
func expect(r refRow) (row Row, exprCFA bool) {
	row.PC = r.loc
	if r.ra == "u" {
		return Row{PC: r.loc, CFA: CFAEnd}, false
	}
	switch {
	case r.ra != "c-8":
		row.CFA = CFAUnsupported
	case r.rsp != "u" && r.rsp != "s":
		row.CFA = CFAUnsupported
	case r.cfa == "exp":
		exprCFA = true
	case strings.HasPrefix(r.cfa, "rsp+"), strings.HasPrefix(r.cfa, "rbp+"):
		off, err := strconv.ParseInt(r.cfa[4:], 10, 64)
		if err != nil || off > 1<<31-1 {
			row.CFA = CFAUnsupported
			break
		}
		row.CFA, row.CFAOff = CFARSP, int32(off)
		if r.cfa[:3] == "rbp" {
			row.CFA = CFARBP
		}
	default:
		row.CFA = CFAUnsupported
	}
	switch {
	case r.rbp == "u" || r.rbp == "s":
		row.RBP = RBPSame
	case strings.HasPrefix(r.rbp, "c-") || strings.HasPrefix(r.rbp, "c+"):
		off, err := strconv.ParseInt(r.rbp[1:], 10, 64)
		if err != nil || off < -1<<15 || off >= 1<<15 {
			row.RBP = RBPUnsupported
		} else {
			row.RBP, row.RBPOff = RBPOffset, int16(off)
		}
	default:
		row.RBP = RBPUnsupported
	}
	return row, exprCFA
}

// crossCheck compares the table with readelf at every readelf row, at
// every table row and at each FDE end. It returns a summary.
func crossCheck(t *testing.T, path string, tab *Table, section string) string {
	t.Helper()
	ref := readelfFrames(t, path)
	var fdes []refFDE
	for _, f := range ref {
		if f.section == section && f.end > f.begin {
			fdes = append(fdes, f)
		}
	}
	sort.Slice(fdes, func(i, j int) bool { return fdes[i].begin < fdes[j].begin })
	starts := map[uint64]bool{}
	for _, f := range fdes {
		starts[f.begin] = true
	}
	// want returns readelf's rule at pc inside f.
	want := func(f *refFDE, pc uint64) (Row, bool) {
		i := sort.Search(len(f.rows), func(i int) bool { return f.rows[i].loc > pc })
		if i == 0 {
			i = 1 // before the first LOC the first row applies (it is at begin)
		}
		return expect(f.rows[i-1])
	}
	var checked, plt, mismatches int
	check := func(f *refFDE, pc uint64) {
		checked++
		w, exprCFA := want(f, pc)
		got := tab.Lookup(pc)
		ok := false
		switch {
		case w.CFA == CFAEnd:
			ok = got.CFA == CFAEnd
		case exprCFA:
			ok = (got.CFA == CFAPLT || got.CFA == CFAUnsupported) && (got.RBP == w.RBP && got.RBPOff == w.RBPOff || got.CFA == CFAUnsupported)
			if got.CFA == CFAPLT {
				plt++
			}
		case w.CFA == CFAUnsupported:
			ok = got.CFA == CFAUnsupported
		default:
			ok = got.sameRule(w)
		}
		if !ok {
			mismatches++
			if mismatches <= 10 {
				t.Errorf("%s %#x (FDE %#x..%#x): table %v, readelf %+v", section, pc, f.begin, f.end, got, w)
			}
		}
	}
	for i := range fdes {
		f := &fdes[i]
		for _, r := range f.rows {
			if r.loc >= f.begin && r.loc < f.end {
				check(f, r.loc)
			}
		}
		// Every table row inside the FDE must match readelf too.
		k := sort.Search(len(tab.Rows), func(k int) bool { return tab.Rows[k].PC >= f.begin })
		for ; k < len(tab.Rows) && tab.Rows[k].PC < f.end; k++ {
			check(f, tab.Rows[k].PC)
		}
		if !starts[f.end] {
			checked++
			if got := tab.Lookup(f.end); got.CFA != CFANone && !(i+1 < len(fdes) && fdes[i+1].begin < f.end) {
				mismatches++
				t.Errorf("%s: after FDE %#x..%#x: %v, want no info", section, f.begin, f.end, got)
			}
		}
	}
	if len(fdes) == 0 {
		t.Errorf("%s: readelf shows no %s FDEs", path, section)
	}
	return fmt.Sprintf("%d FDEs, %d points checked against readelf, %d PLT expression points, %d mismatches",
		len(fdes), checked, plt, mismatches)
}
