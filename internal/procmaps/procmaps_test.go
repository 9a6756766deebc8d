package procmaps

import "testing"

const sampleMaps = `55d0c8a00000-55d0c8a01000 r--p 00000000 08:01 1234                       /usr/bin/prog
55d0c8a01000-55d0c8a02000 r-xp 00001000 08:01 1234                       /usr/bin/prog
7f0a1c000000-7f0a1c021000 rw-p 00000000 00:00 0 
7f0a1c200000-7f0a1c228000 r--p 00000000 fd:00 99                         /opt/my app/lib x.so (deleted)
7ffd5a1f0000-7ffd5a1f2000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`

func TestParse(t *testing.T) {
	es, err := Parse([]byte(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 6 {
		t.Fatalf("got %d entries", len(es))
	}
	e := es[1]
	if e.Start != 0x55d0c8a01000 || e.End != 0x55d0c8a02000 || e.Offset != 0x1000 || e.Perms != "r-xp" ||
		e.DevMajor != 8 || e.DevMinor != 1 || e.Inode != 1234 || e.Path != "/usr/bin/prog" || !e.Exec() || !e.FileBacked() {
		t.Errorf("entry 1: %+v", e)
	}
	if es[2].Path != "" || es[2].FileBacked() || es[2].Exec() {
		t.Errorf("anon entry: %+v", es[2])
	}
	if e := es[3]; e.Path != "/opt/my app/lib x.so" || !e.Deleted || e.DevMajor != 0xfd {
		t.Errorf("deleted entry with spaces: %+v", e)
	}
	if e := es[4]; e.Path != "[vdso]" || e.FileBacked() {
		t.Errorf("vdso entry: %+v", e)
	}
	for _, bad := range []string{
		"55d0c8a00000 r--p 00000000 08:01 1234 /x",
		"2000-1000 r--p 00000000 08:01 1234 /x",
		"1000-2000 r--p zz 08:01 1234 /x",
		"1000-2000 r-p 0 08:01 1234 /x",
		"1000-2000 r--p 0 0801 1234 /x",
		"1000-2000 r--p 0 08:01",
	} {
		if es, err := Parse([]byte(bad)); err == nil || es != nil {
			t.Errorf("Parse(%q) = %v, %v; want an error", bad, es, err)
		}
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte(sampleMaps))
	f.Add([]byte(""))
	f.Add([]byte("0-0 ---- 0 0:0 0"))
	f.Add([]byte("ffffffffffffffff-0 r-xp ffffffffffffffff ffffffff:ffffffff 18446744073709551615 /a (deleted)\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := Parse(data)
		if (es == nil) == (err == nil) {
			t.Fatalf("result %v with error %v", es, err)
		}
		for _, e := range es {
			if e.End < e.Start || len(e.Perms) != 4 {
				t.Fatalf("bad entry accepted: %+v", e)
			}
			e.Exec()
			e.FileBacked()
		}
	})
}
